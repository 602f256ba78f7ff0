# Sourced by the scripts that need AWS: starts moto's server on a free 127.0.0.1 port
# (log in $1), stops it when the script exits, and points the AWS SDK environment at it.
start_moto() {
  local log=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  python3 -m moto.server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  moto_pid=$!
  trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
      break
    fi
    kill -0 "$moto_pid" 2>/dev/null || { cat "$log"; echo "moto's server did not start" >&2; exit 1; }
    sleep 0.2
  done
  echo "moto's server on 127.0.0.1:$port"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE
}
