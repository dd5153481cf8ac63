//! Test-only: a plugin that reads a host file through WASI. Linking it pulls
//! in `wasi:filesystem`, so the runtime must refuse it at load time.

use multus_plugin_sdk::{error, Attachment, CniError, CniResult, Plugin, Request};

struct ReadsFiles;

impl Plugin for ReadsFiles {
    fn add(_req: Request) -> Result<CniResult, CniError> {
        let text =
            std::fs::read_to_string("/etc/hostname").map_err(|e| error(999, e.to_string()))?;
        Err(error(999, format!("read the host's files: {text}")))
    }

    fn del(_req: Request) -> Result<(), CniError> {
        Ok(())
    }

    fn check(_req: Request) -> Result<(), CniError> {
        Ok(())
    }

    fn status(_req: Request) -> Result<(), CniError> {
        Ok(())
    }

    fn gc(_req: Request, _valid: Vec<Attachment>) -> Result<(), CniError> {
        Ok(())
    }
}

multus_plugin_sdk::export!(ReadsFiles);
