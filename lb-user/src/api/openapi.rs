//! `GET /openapi.json`: the OpenAPI 3 document generated from the handlers' types (utoipa),
//! completed with what applies to every path: the `serviceName` parameter, the errors every
//! request may meet (401 without the bearer token, 404 for another service, 400 for an id in
//! the path that is not a number or a malformed body, 413 for a body over the limit) and, for
//! PUT, the partial bodies a change takes.
use utoipa::{
    openapi::{
        path::{Operation, ParameterBuilder, ParameterIn},
        request_body::RequestBody,
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
        ContentBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
    },
    OpenApi as _,
};

use super::{error::ErrorBody, extract::BODY_LIMIT, SERVICE_PREFIX};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "lb: the IPLB TCP API",
        description = "The TCP side of the OVHcloud Load Balancer API, for a TLS-aware L4 load balancer. \
Every create, update and delete changes the staged configuration only; `POST /refresh` applies a zone's staged \
configuration to traffic. PUT and DELETE answer 204 No Content. Errors are `{\"class\", \"message\"}`."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build()
}

/// Adds what every operation shares; `bearer` when the daemon requires a token.
pub fn complete(mut doc: OpenApi, bearer: bool) -> OpenApi {
    let mut partial_schemas = Vec::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        let under_service = path.starts_with(SERVICE_PREFIX);
        // Ids in the path beyond `{serviceName}`: one that is not a number answers 400.
        let has_ids = path.trim_start_matches(SERVICE_PREFIX).contains('{');
        let method = [("put", &mut item.put), ("get", &mut item.get), ("post", &mut item.post), ("delete", &mut item.delete)];
        for (method, operation) in method {
            let Some(op) = operation.as_mut() else { continue };
            if under_service {
                add_service_parameter(op);
                op.responses.responses.entry("404".into()).or_insert_with(|| error_response("No such service (`serviceName`)").into());
            }
            if bearer {
                op.responses.responses.insert("401".into(), error_response("Missing or wrong `Authorization: Bearer` token").into());
            }
            if op.request_body.is_some() {
                op.responses.responses.insert("413".into(), error_response(&format!("Body over {BODY_LIMIT} bytes")).into());
            }
            let bad_request = match (has_ids, op.request_body.is_some()) {
                (true, true) => Some("An id in the path that is not a number; malformed JSON, wrong type or unknown field"),
                (true, false) => Some("An id in the path that is not a number"),
                (false, true) => Some("Malformed JSON, wrong type or unknown field"),
                (false, false) => None,
            };
            if let Some(description) = bad_request {
                op.responses.responses.entry("400".into()).or_insert_with(|| error_response(description).into());
            }
            if method == "put" {
                if let Some(name) = op.request_body.as_mut().and_then(partial_body) {
                    partial_schemas.push(name);
                }
            }
        }
    }
    if let Some(components) = doc.components.as_mut() {
        for name in partial_schemas {
            if let Some(RefOr::T(Schema::Object(mut object))) = components.schemas.get(&name).cloned() {
                object.required.clear();
                object.description = Some(format!(
                    "Fields of {name} to change: any subset of its writable fields; `null` unsets a nullable field, read-only fields are ignored."
                ));
                components.schemas.insert(format!("{name}Update"), RefOr::T(Schema::Object(object)));
            }
        }
        if bearer {
            components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        }
    }
    if bearer {
        doc.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
    doc
}

/// Read-only properties utoipa cannot mark itself (arrays, nullable references).
const READ_ONLY: &[(&str, &str)] = &[("Route", "rules"), ("Route", "status"), ("Server", "serverState")];

/// The document as served, with every read-only property marked (in `X` and `XUpdate`).
pub fn to_json(doc: &OpenApi) -> String {
    let mut value = match serde_json::to_value(doc) {
        Ok(value) => value,
        Err(e) => return format!("{{\"error\": \"{e}\"}}"),
    };
    for (schema, property) in READ_ONLY {
        for name in [schema.to_string(), format!("{schema}Update")] {
            if let Some(p) = value.pointer_mut(&format!("/components/schemas/{name}/properties/{property}")).and_then(|p| p.as_object_mut()) {
                p.insert("readOnly".into(), true.into());
            }
        }
    }
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

fn add_service_parameter(op: &mut Operation) {
    let parameter = ParameterBuilder::new()
        .name("serviceName")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The service, as `--service` names it"))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build();
    op.parameters.get_or_insert_with(Vec::new).insert(0, parameter);
}

/// Points a PUT body at `<Schema>Update` (the same fields, none required); returns `<Schema>`.
fn partial_body(body: &mut RequestBody) -> Option<String> {
    let content = body.content.get_mut("application/json")?;
    let RefOr::Ref(reference) = content.schema.as_ref()? else { return None };
    let name = reference.ref_location.rsplit('/').next()?.to_string();
    content.schema = Some(RefOr::Ref(Ref::from_schema_name(format!("{name}Update"))));
    Some(name)
}
