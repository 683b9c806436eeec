//! Reading requests: JSON bodies (any or no content type; malformed JSON, wrong types and
//! unknown fields answer 400 naming the field; bodies over the limit 413) and path ids.
use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{request::Parts, StatusCode},
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::control::ControlError;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;

/// A request body parsed as JSON; `None` when the body is empty.
pub struct JsonBody(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body exceeds {BODY_LIMIT} bytes"))
            } else {
                ApiError::bad_request(format!("reading the request body: {}", e.body_text()))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        serde_json::from_slice(&bytes).map(|v| Self(Some(v))).map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
    }
}

impl JsonBody {
    /// The body, which must be there.
    pub fn required(self) -> Result<Value, ApiError> {
        self.0.ok_or_else(|| ApiError::bad_request("a JSON body is required"))
    }

    /// The body as a JSON object (the fields a PUT changes).
    pub fn object(self) -> Result<Map<String, Value>, ApiError> {
        match self.required()? {
            Value::Object(map) => Ok(map),
            other => Err(ApiError::bad_request(format!("the body must be a JSON object, not {}", kind(&other)))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Path parameters; a malformed id answers 400 naming the parameter.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state).await.map(|Path(t)| Self(t)).map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// Deserializes `value`, which must be a JSON object, as `T`; errors name the object and the
/// field. (serde would also read a struct from an array, positionally: `[null]` is no body.)
pub fn parse<T: DeserializeOwned>(object: &str, value: Value) -> Result<T, ControlError> {
    if !value.is_object() {
        return Err(ControlError::BadRequest(format!("{object}: the body must be a JSON object, not {}", kind(&value))));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ControlError::BadRequest(format!("{object}: {inner}"))
        } else {
            ControlError::BadRequest(format!("{object}: field `{path}`: {inner}"))
        }
    })
}

/// A partial update: `current` with the fields of `patch` replaced (`null` included).
pub fn merge<T: Serialize + DeserializeOwned>(object: &str, current: &T, patch: &Map<String, Value>) -> Result<T, ControlError> {
    let mut value = serde_json::to_value(current).map_err(|e| ControlError::Internal(e.to_string()))?;
    if let Value::Object(fields) = &mut value {
        fields.extend(patch.clone());
    }
    parse(object, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::model::Frontend;

    fn message(r: Result<Frontend, ControlError>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn type_errors_and_unknown_fields_name_the_field() {
        let m = message(parse("frontend", serde_json::json!({"port": 443})));
        assert!(m.contains("field `port`") && m.contains("expected a string"), "{m}");
        let m = message(parse("frontend", serde_json::json!({"port": "443", "colour": "blue"})));
        assert!(m.contains("colour"), "{m}");
        let m = message(parse("frontend", serde_json::json!({"zone": "all"})));
        assert!(m.contains("missing field `port`"), "{m}");
        let m = message(parse("frontend", serde_json::json!({"port": "443", "allowedSource": [1]})));
        assert!(m.contains("field `allowedSource[0]`"), "{m}");
        let m = message(parse("frontend", serde_json::json!([null, "443"])));
        assert!(m.contains("must be a JSON object, not an array"), "{m}");
    }

    #[test]
    fn merge_replaces_only_given_fields_and_null_clears() {
        let current = Frontend { port: "443".into(), zone: "all".into(), default_farm_id: Some(2), display_name: Some("a".into()), ..Default::default() };
        let patch = serde_json::json!({"displayName": null, "disabled": true});
        let Value::Object(patch) = patch else { unreachable!() };
        let merged: Frontend = merge("frontend", &current, &patch).unwrap();
        assert_eq!((merged.port.as_str(), merged.default_farm_id, merged.display_name, merged.disabled), ("443", Some(2), None, true));
    }
}
