//! The local master key: 32 random bytes in `<data-dir>/master.key`, created with mode
//! 0600 on first use. It wraps data keys the way KMS does on AWS.

use std::io::{Read, Write};
use std::path::Path;

use pipes_core::crypto::MasterKeyWrapper;

pub const MASTER_KEY_FILE: &str = "master.key";

/// Loads the master key from `data_dir`, creating it (0600) if it does not exist.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<MasterKeyWrapper> {
    let path = data_dir.join(MASTER_KEY_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            let key = MasterKeyWrapper::generate_master();
            file.write_all(&key)?;
            file.sync_all()?;
            Ok(MasterKeyWrapper::new(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut bytes = Vec::new();
            std::fs::File::open(&path)?.read_to_end(&mut bytes)?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a 32-byte key", path.display()),
                )
            })?;
            Ok(MasterKeyWrapper::new(key))
        }
        Err(e) => Err(e),
    }
}
