// POST /v1/apps/token written the usual Node.js way (Node.js 20, AWS SDK v3): the peer
// the cold-start benchmark (bench/src/bin/cold_start.rs, `--node`) measures the Rust
// token-issuer against, on the same moto server and through the same local Runtime API.
// It does the route's work with the same DynamoDB requests in the same order: the key
// lookup (one GetItem; the item carries a copy of the App), the App's rate counter (one
// UpdateItem ADD), then the session and its token lookup in one TransactWriteItems.
// Not part of the product. The Runtime API loop is the one the managed runtime runs.
import { createHash, randomBytes } from "node:crypto";
import {
  DynamoDBClient,
  GetItemCommand,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";

const table = process.env.TABLE_NAME;
const base = process.env.PUBLIC_BASE_URL;
const db = new DynamoDBClient({});

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const base62 = (n) => [...randomBytes(n)].map((b) => ALPHABET[b % 62]).join("");
const sha256 = (s) => createHash("sha256").update(s).digest("hex");
const answer = (statusCode, body) => ({
  statusCode,
  headers: { "content-type": "application/json", "cache-control": "no-store" },
  body: JSON.stringify(body),
});
const error = (statusCode, code, message) => answer(statusCode, { error: { code, message } });

async function issueToken(event) {
  const auth = event.headers?.authorization ?? "";
  const key = auth.startsWith("Bearer ") ? auth.slice(7) : "";
  if (!/^ak_[0-9A-Za-z]{32}$/.test(key)) return error(401, "unauthorized", "a valid app key is required");
  const found = await db.send(
    new GetItemCommand({
      TableName: table,
      Key: { pk: { S: `KEY#${sha256(key)}` }, sk: { S: "KEY" } },
      ConsistentRead: true,
    }),
  );
  const item = found.Item;
  if (!item || item.revokedAt || !item.app) return error(401, "unauthorized", "a valid app key is required");
  const appId = item.appId.S;
  const slug = item.app.M.slug.S;

  const now = Date.now();
  const window = now - (now % 5000);
  const counted = await db.send(
    new UpdateItemCommand({
      TableName: table,
      Key: { pk: { S: `RL#app:${appId}` }, sk: { S: String(window).padStart(15, "0") } },
      UpdateExpression: "ADD #c :one SET #t = :ttl",
      ExpressionAttributeNames: { "#c": "count", "#t": "ttl" },
      ExpressionAttributeValues: { ":one": { N: "1" }, ":ttl": { N: String(Math.floor(window / 1000) + 65) } },
      ReturnValues: "UPDATED_NEW",
    }),
  );
  if (Number(counted.Attributes.count.N) > 100) return error(429, "rate_limited", "too many requests");

  let body;
  try {
    body = JSON.parse(event.isBase64Encoded ? Buffer.from(event.body, "base64").toString() : event.body ?? "");
  } catch {
    return error(400, "invalid_request", "the body is not valid JSON");
  }
  let redirect;
  try {
    redirect = new URL(body?.redirectUrl);
  } catch {
    return error(400, "invalid_request", "redirectUrl: must be an absolute https URL");
  }
  if (redirect.protocol !== "https:" || body.redirectUrl.length > 2048) {
    return error(400, "invalid_request", "redirectUrl: must be an absolute https URL");
  }

  const sessionId = `ses_${base62(20)}`;
  const token = `tok_${base62(32)}`;
  const expiresAt = new Date(now + 24 * 3600 * 1000);
  const ttl = Math.floor(expiresAt.getTime() / 1000) + 30 * 86400;
  await db.send(
    new TransactWriteItemsCommand({
      TransactItems: [
        {
          Put: {
            TableName: table,
            Item: {
              pk: { S: `SES#${sessionId}` },
              sk: { S: "SES" },
              appId: { S: appId },
              status: { S: "pending" },
              redirectUrl: { S: body.redirectUrl },
              metadata: { S: JSON.stringify(body.metadata ?? {}) },
              createdAt: { N: String(now) },
              expiresAt: { N: String(expiresAt.getTime()) },
              ttl: { N: String(ttl) },
            },
            ConditionExpression: "attribute_not_exists(pk)",
          },
        },
        {
          Put: {
            TableName: table,
            Item: {
              pk: { S: `TOK#${sha256(token)}` },
              sk: { S: "TOK" },
              sessionId: { S: sessionId },
              ttl: { N: String(ttl) },
            },
            ConditionExpression: "attribute_not_exists(pk)",
          },
        },
      ],
    }),
  );
  return answer(200, {
    token,
    sessionId,
    signupUrl: `${base}/apps/${slug}?token=${token}`,
    expiresAt: expiresAt.toISOString(),
  });
}

const api = `http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime`;
for (;;) {
  const next = await fetch(`${api}/invocation/next`);
  const id = next.headers.get("lambda-runtime-aws-request-id");
  const event = await next.json();
  let out;
  try {
    out = await issueToken(event);
  } catch (e) {
    console.error(e);
    out = error(503, "unavailable", "the service is temporarily unavailable; retry shortly");
  }
  await fetch(`${api}/invocation/${id}/response`, { method: "POST", body: JSON.stringify(out) });
}
