//! Reading a service configuration from a JSON or TOML file (`serve --config`).
//! Objects without an id get the next free one, in file order, as the API would assign them.
use std::path::{Path, PathBuf};

use lb_core::model::ServiceConfig;

/// A configuration file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
}

/// What the parser of the file's format said.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub fn load(path: &Path) -> Result<ServiceConfig, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: path.to_path_buf(), source })?;
    let mut config = parse(&text, path.extension().and_then(|e| e.to_str())).map_err(|source| ConfigFileError::Parse { path: path.to_path_buf(), source })?;
    assign_missing_ids(&mut config);
    Ok(config)
}

fn parse(text: &str, extension: Option<&str>) -> Result<ServiceConfig, ParseError> {
    Ok(match extension {
        Some("toml") => toml::from_str(text)?,
        _ => serde_json::from_str(text)?,
    })
}

fn assign_missing_ids(config: &mut ServiceConfig) {
    fn fill<'a>(ids: impl Iterator<Item = &'a mut Option<u32>>) {
        let ids: Vec<&mut Option<u32>> = ids.collect();
        let mut next = ids.iter().filter_map(|id| **id).max().unwrap_or(0) + 1;
        for id in ids {
            if id.is_none() {
                *id = Some(next);
                next += 1;
            }
        }
    }
    fill(config.frontends.iter_mut().map(|f| &mut f.frontend_id));
    fill(config.farms.iter_mut().map(|f| &mut f.farm_id));
    fill(config.farms.iter_mut().flat_map(|f| f.servers.iter_mut()).map(|s| &mut s.server_id));
    fill(config.routes.iter_mut().map(|r| &mut r.route_id));
    fill(config.routes.iter_mut().flat_map(|r| r.rules.iter_mut()).map(|r| &mut r.rule_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_toml_give_the_same_config_with_ids_filled() {
        let json = r#"{"frontends":[{"port":"443","defaultFarmId":1}],
            "farms":[{"farmId":1,"port":8443,"servers":[{"address":"10.0.0.2"},{"serverId":7,"address":"10.0.0.3"}]}],
            "routes":[{"frontendId":1,"action":{"type":"farm","target":"1"},"rules":[{"field":"protocol","match":"is","pattern":"http/2.0"}]}]}"#;
        let toml = r#"
            [[frontends]]
            port = "443"
            defaultFarmId = 1
            [[farms]]
            farmId = 1
            port = 8443
            servers = [{ address = "10.0.0.2" }, { serverId = 7, address = "10.0.0.3" }]
            [[routes]]
            frontendId = 1
            action = { type = "farm", target = "1" }
            rules = [{ field = "protocol", match = "is", pattern = "http/2.0" }]
        "#;
        let mut a = parse(json, Some("json")).unwrap();
        let mut b = parse(toml, Some("toml")).unwrap();
        assign_missing_ids(&mut a);
        assign_missing_ids(&mut b);
        assert_eq!(a, b);
        assert_eq!(a.farms[0].servers[0].server_id, Some(8));
        assert_eq!(a.frontends[0].frontend_id, Some(1));
        assert_eq!(a.routes[0].rules[0].rule_id, Some(1));
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = parse(r#"{"frontends":[{"port":"443","colour":"blue"}]}"#, Some("json")).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
