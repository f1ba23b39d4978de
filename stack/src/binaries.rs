//! Every external program the stack runs, in one place: the environment variable that overrides
//! it, where it is by default (Debian's packages, `cargo install`, this workspace's build), and
//! how to get it when it is missing.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// An external program the stack starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binary {
    /// Its name in messages.
    pub name: &'static str,
    /// The environment variable that overrides its path.
    pub env: &'static str,
    /// Where it is when the variable is not set.
    default: Location,
    /// How to install it.
    pub hint: &'static str,
}

/// Where a binary is found without its environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    /// A fixed path (a Debian package's).
    Path(&'static str),
    /// `NAME` on `PATH`, else in `~/.cargo/bin` (`cargo install`).
    Installed(&'static str),
    /// `NAME` in this workspace's release build (`$CARGO_TARGET_DIR` or `target/`).
    Workspace(&'static str),
}

/// iipsrv 1.1, the FastCGI image server (Debian `iipimage-server`).
pub const IIPSRV: Binary = Binary {
    name: "iipsrv",
    env: "IIPSRV_BIN",
    default: Location::Path("/usr/lib/iipimage-server/iipsrv.fcgi"),
    hint: "run deploy/local/install-deps (apt-get install iipimage-server)",
};

/// The Redis server of the ID archive (Debian `redis-server`).
pub const REDIS_SERVER: Binary = Binary {
    name: "redis-server",
    env: "REDIS_SERVER_BIN",
    default: Location::Path("/usr/bin/redis-server"),
    hint: "run deploy/local/install-deps (apt-get install redis-server)",
};

/// Garage, the S3 store of the access masters (`cargo install garage --locked`).
pub const GARAGE: Binary = Binary {
    name: "garage",
    env: "GARAGE_BIN",
    default: Location::Installed("garage"),
    hint: "run deploy/local/install-deps (cargo install garage --locked: about 12-15 minutes on 2 cores, once)",
};

/// nginx, the baseline in front of iipsrv and the static-file anchor (Debian `nginx`).
pub const NGINX: Binary = Binary {
    name: "nginx",
    env: "NGINX_BIN",
    default: Location::Path("/usr/sbin/nginx"),
    hint: "run deploy/local/install-deps (apt-get install nginx)",
};

/// openssl, which makes the throwaway certificates of a TLS Redis.
pub const OPENSSL: Binary = Binary {
    name: "openssl",
    env: "OPENSSL_BIN",
    default: Location::Path("/usr/bin/openssl"),
    hint: "apt-get install openssl",
};

/// The gateway binary of this workspace.
pub const GATEWAY: Binary = Binary {
    name: "iiif-gateway",
    env: "IIIF_GATEWAY_BIN",
    default: Location::Workspace("iiif-gateway"),
    hint: "run cargo build --release -p gateway",
};

/// The `lazyfetch` CLI of this workspace (prune, purge, warm, stats).
pub const LAZYFETCH: Binary = Binary {
    name: "lazyfetch",
    env: "LAZYFETCH_BIN",
    default: Location::Workspace("lazyfetch"),
    hint: "run cargo build --release -p lazyfetch",
};

/// The load generator of this workspace (`loadtest/`).
pub const LOADTEST: Binary = Binary {
    name: "loadtest",
    env: "LOADTEST_BIN",
    default: Location::Workspace("loadtest"),
    hint: "run cargo build --release -p loadtest",
};

/// Every binary, for `stack binaries`, `stack which` and diagnostics.
pub const ALL: [Binary; 8] = [
    IIPSRV,
    REDIS_SERVER,
    GARAGE,
    NGINX,
    OPENSSL,
    GATEWAY,
    LAZYFETCH,
    LOADTEST,
];

/// The binary called `name` (as in [`Binary::name`]).
pub fn named(name: &str) -> Option<Binary> {
    ALL.into_iter().find(|binary| binary.name == name)
}

impl Binary {
    /// The path this binary is run from (it may not exist: see [`Binary::require`]).
    pub fn path(&self) -> PathBuf {
        if let Some(path) = std::env::var_os(self.env).filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        match self.default {
            Location::Path(path) => PathBuf::from(path),
            Location::Installed(name) => installed(name),
            Location::Workspace(name) => release_dir().join(name),
        }
    }

    /// The path, checked to be an existing file.
    ///
    /// # Errors
    /// [`Error::MissingBinary`] naming the variable that overrides it and how to install it.
    pub fn require(&self) -> Result<PathBuf, Error> {
        let path = self.path();
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::MissingBinary {
                name: self.name,
                path,
                env: self.env,
                hint: self.hint,
            })
        }
    }
}

/// `name` on `PATH`, else `~/.cargo/bin/name` (where `cargo install` puts it).
fn installed(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        home.join(".cargo/bin").join(name)
    })
}

/// The workspace's release directory: `$CARGO_TARGET_DIR/release`, else `target/release` of
/// the repository this crate was built from.
fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| repo_root().join("target"), PathBuf::from)
        .join("release")
}

/// The repository root (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("stack/ has a parent")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debian_defaults() {
        // Only checked where the variable is unset, so a developer's override does not fail it.
        if std::env::var_os("IIPSRV_BIN").is_none() {
            assert_eq!(
                IIPSRV.path(),
                PathBuf::from("/usr/lib/iipimage-server/iipsrv.fcgi")
            );
        }
        if std::env::var_os("REDIS_SERVER_BIN").is_none() {
            assert_eq!(REDIS_SERVER.path(), PathBuf::from("/usr/bin/redis-server"));
        }
    }

    #[test]
    fn a_missing_binary_names_its_variable_and_the_fix() {
        let missing = Binary {
            name: "nothing",
            env: "STACK_TEST_NO_SUCH_BINARY",
            default: Location::Path("/nonexistent/nothing"),
            hint: "install nothing",
        };
        let message = missing.require().unwrap_err().to_string();
        assert!(message.contains("/nonexistent/nothing"), "{message}");
        assert!(message.contains("STACK_TEST_NO_SUCH_BINARY"), "{message}");
        assert!(message.contains("install nothing"), "{message}");
    }
}
