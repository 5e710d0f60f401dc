//! Secrets: the cron secrets that callers of scheduled endpoints present (only a salted
//! PBKDF2-SHA256 hash is kept, compared in constant time) — `set_cron_secret` and
//! `verify_cron_secret`. Credentials and API keys live in `secrets` and superuser-only settings.

use crate::{as_owner, invalid_parameter};
use pgrx::prelude::*;
use subtle::ConstantTimeEq;

const ALGORITHM: &str = "pbkdf2-sha256";
/// Cron secrets are long random tokens, not passwords people choose, so the iteration count
/// guards against offline guessing of weak ones without making each check slow.
const ITERATIONS: u32 = 100_000;
const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;
const MIN_SECRET_CHARS: usize = 16;

/// PBKDF2-HMAC-SHA256 of `secret` with `salt`.
pub fn hash_secret(secret: &str, salt: &[u8], iterations: u32) -> [u8; HASH_BYTES] {
    let mut hash = [0_u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(secret.as_bytes(), salt, iterations, &mut hash);
    hash
}

/// Whether `secret` hashes to `expected`, in time that does not depend on where they differ.
pub fn secret_matches(secret: &str, salt: &[u8], iterations: u32, expected: &[u8]) -> bool {
    hash_secret(secret, salt, iterations).ct_eq(expected).into()
}

fn random_salt() -> [u8; SALT_BYTES] {
    let mut salt = [0_u8; SALT_BYTES];
    if !unsafe { pg_sys::pg_strong_random(salt.as_mut_ptr().cast(), SALT_BYTES) } {
        error!("could not generate a random salt");
    }
    salt
}

#[pg_schema]
mod pageperfect {
    use super::*;

    /// Stores (or replaces) the cron secret `name`: a random salt and the PBKDF2 hash, never
    /// the secret itself.
    #[pg_extern(volatile)]
    fn set_cron_secret(name: &str, secret: &str) {
        if name.trim().is_empty() {
            invalid_parameter("the secret's name must not be empty");
        }
        if secret.chars().count() < MIN_SECRET_CHARS {
            invalid_parameter(format!("a cron secret must be at least {MIN_SECRET_CHARS} characters long"));
        }
        let salt = random_salt();
        let hash = hash_secret(secret, &salt, ITERATIONS);
        Spi::run_with_args(
            "INSERT INTO pageperfect.cron_secrets (name, algorithm, iterations, salt, hash) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO UPDATE SET algorithm = excluded.algorithm, iterations = excluded.iterations,
                                              salt = excluded.salt, hash = excluded.hash, updated_at = now()",
            &[name.into(), ALGORITHM.into(), (ITERATIONS as i32).into(), salt.to_vec().into(), hash.to_vec().into()],
        )
        .unwrap_or_else(|e| error!("{e}"));
    }

    /// Whether `secret` is the cron secret `name` (false when there is no such secret). Any role
    /// allowed to call it may check a secret; only superusers can read the hashes.
    #[pg_extern(volatile)]
    fn verify_cron_secret(name: &str, secret: &str) -> bool {
        let stored = as_owner(|| {
            // Always one row: NULLs when there is no such secret.
            Spi::get_three_with_args::<i32, Vec<u8>, Vec<u8>>(
                "SELECT s.iterations, s.salt, s.hash
                   FROM (SELECT) one LEFT JOIN pageperfect.cron_secrets s ON s.name = $1",
                &[name.into()],
            )
        })
        .unwrap_or_else(|e| error!("{e}"));
        match stored {
            (Some(iterations), Some(salt), Some(hash)) if iterations > 0 => {
                secret_matches(secret, &salt, iterations as u32, &hash)
            }
            // The same work as a real check, so that timing does not tell which names exist.
            _ => {
                std::hint::black_box(secret_matches(secret, &[0; SALT_BYTES], ITERATIONS, &[0; HASH_BYTES]));
                false
            }
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_standard_pbkdf2_hmac_sha256() {
        // RFC 7914, section 11: PBKDF2-HMAC-SHA256 (P = "passwd", S = "salt", c = 1).
        assert_eq!(
            hash_secret("passwd", b"salt", 1).iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn only_the_same_secret_with_the_same_salt_matches() {
        let hash = hash_secret("a-long-random-cron-token", b"0123456789abcdef", 1_000);
        assert!(secret_matches("a-long-random-cron-token", b"0123456789abcdef", 1_000, &hash));
        assert!(!secret_matches("a-long-random-cron-tokeN", b"0123456789abcdef", 1_000, &hash));
        assert!(!secret_matches("a-long-random-cron-token", b"0123456789abcdeF", 1_000, &hash));
        assert!(!secret_matches("a-long-random-cron-token", b"0123456789abcdef", 1_001, &hash));
        assert!(!secret_matches("a-long-random-cron-token", b"0123456789abcdef", 1_000, &hash[..31]));
    }

    #[pg_test]
    fn a_cron_secret_is_stored_as_a_salted_hash_and_verified() {
        Spi::run("SELECT pageperfect.set_cron_secret('deploy', 'correct-horse-battery-staple')").unwrap();
        let verify = |name: &str, secret: &str| {
            Spi::get_one_with_args::<bool>("SELECT pageperfect.verify_cron_secret($1, $2)", &[name.into(), secret.into()]).unwrap().unwrap()
        };
        assert!(verify("deploy", "correct-horse-battery-staple"));
        assert!(!verify("deploy", "correct-horse-battery-stapler"));
        assert!(!verify("nobody", "correct-horse-battery-staple"));
        // Nothing of the secret is stored; a new secret gets a new salt.
        let (salt, hash) = Spi::get_two::<Vec<u8>, Vec<u8>>("SELECT salt, hash FROM pageperfect.cron_secrets WHERE name = 'deploy'").unwrap();
        let stored = Spi::get_one::<String>("SELECT row_to_json(s)::text FROM pageperfect.cron_secrets s").unwrap().unwrap();
        assert!(!stored.contains("horse") && !stored.contains(&hex_of("correct-horse-battery-staple")), "{stored}");
        Spi::run("SELECT pageperfect.set_cron_secret('deploy', 'correct-horse-battery-staple')").unwrap();
        let (new_salt, new_hash) = Spi::get_two::<Vec<u8>, Vec<u8>>("SELECT salt, hash FROM pageperfect.cron_secrets WHERE name = 'deploy'").unwrap();
        assert!(salt != new_salt && hash != new_hash);
        assert!(verify("deploy", "correct-horse-battery-staple"));
    }

    fn hex_of(text: &str) -> String {
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    #[pg_test(error = "a cron secret must be at least 16 characters long")]
    fn a_short_cron_secret_is_refused() {
        Spi::run("SELECT pageperfect.set_cron_secret('deploy', 'hunter2')").unwrap();
    }
}
