//! Every error the API answers: JSON `{"class": "Client::BadRequest", "message": "…"}` with
//! the matching status code, as IPLB answers.
use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use tracing::{error, info};
use utoipa::ToSchema;

use crate::control::ControlError;

/// An error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `Client::BadRequest` (400), `Client::Unauthorized` (401), `Client::NotFound` (404),
    /// `Client::MethodNotAllowed` (405), `Client::Conflict` (409),
    /// `Client::RequestEntityTooLarge` (413), `Server::InternalServerError` (500),
    /// `Server::ServiceUnavailable` (503: the shared configuration store is unreachable).
    #[schema(example = "Client::BadRequest")]
    pub class: String,
    /// What was wrong, naming the object, its id and the field.
    #[schema(example = "frontend 1: field `port`: \"70000\" in \"70000\" is not a port in 1..=49151")]
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn class(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "Client::BadRequest",
            StatusCode::UNAUTHORIZED => "Client::Unauthorized",
            StatusCode::NOT_FOUND => "Client::NotFound",
            StatusCode::METHOD_NOT_ALLOWED => "Client::MethodNotAllowed",
            StatusCode::CONFLICT => "Client::Conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "Client::RequestEntityTooLarge",
            StatusCode::SERVICE_UNAVAILABLE => "Server::ServiceUnavailable",
            s if s.is_client_error() => "Client::BadRequest",
            _ => "Server::InternalServerError",
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match &e {
            ControlError::Invalid(_) | ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Store(_) | ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            error!(status = %self.status, message = %self.message, "API request failed");
        } else {
            info!(status = %self.status, message = %self.message, "API request refused");
        }
        let body = ErrorBody { class: self.class().to_string(), message: self.message };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
