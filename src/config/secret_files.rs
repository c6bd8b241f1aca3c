//! Secret settings given as files (`GATEWAY_ADMIN_TOKEN_FILE=/run/secrets/admin`...), as
//! Docker and Kubernetes mount secrets.

use secrecy::SecretString;

use super::{ConfigError, Settings};

/// The secret settings that may be given as a file instead (the variable names a file
/// holding the value, as Docker and Kubernetes mount secrets), and the setting each sets.
pub const SECRET_FILES: [(&str, &str); 4] = [
    ("GATEWAY_ADMIN_TOKEN_FILE", "admin_token"),
    ("GATEWAY_ENCRYPTION_KEYS_FILE", "encryption_keys"),
    ("GATEWAY_DATABASE_URL_FILE", "database_url"),
    ("DATABASE_URL_FILE", "database_url"),
];

impl Settings {
    /// Reads each secret given as a file (`GATEWAY_ADMIN_TOKEN_FILE`...), as container
    /// secrets are mounted: the file's content, without its trailing newline.
    pub(super) fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        for (variable, setting) in SECRET_FILES {
            let Some(path) = std::env::var_os(variable) else {
                continue;
            };
            let bad = |problem: String| ConfigError {
                setting: variable.to_string(),
                problem,
            };
            let direct = &variable[..variable.len() - "_FILE".len()];
            if std::env::var_os(direct).is_some_and(|v| !v.is_empty()) {
                return Err(bad(format!("set {direct} or {variable}, not both")));
            }
            let text = std::fs::read_to_string(&path).map_err(|e| {
                bad(format!(
                    "cannot read {}: {e}",
                    std::path::Path::new(&path).display()
                ))
            })?;
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            if value.trim().is_empty() {
                return Err(bad(format!(
                    "{} is empty",
                    std::path::Path::new(&path).display()
                )));
            }
            let secret = Some(SecretString::from(value));
            match setting {
                "admin_token" => self.admin_token = secret,
                "encryption_keys" => self.encryption_keys = secret,
                _ => self.database_url = secret,
            }
        }
        Ok(())
    }
}
