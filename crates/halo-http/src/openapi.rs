//! `GET /openapi.json`: the document collected from the registered routes, completed with what
//! applies to every operation (bearer auth scheme, the coded error body on every 4xx/503).

use crate::dto::ErrorBody;
use actix_web::{web, HttpResponse};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

/// The serialized document, built once per worker.
struct Document(String);

/// Completes `api` and serves it at `/openapi.json`.
pub fn serve_openapi(cfg: &mut web::ServiceConfig, api: OpenApi, service: &'static str) {
    let json = complete(api, service)
        .to_json()
        .unwrap_or_else(|error| format!("{{\"error\":\"cannot render the document: {error}\"}}"));
    cfg.app_data(web::Data::new(Document(json)))
        .route("/openapi.json", web::get().to(openapi_json));
}

async fn openapi_json(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.0.clone())
}

/// Errors any operation can answer, whatever its own responses list.
const COMMON_ERRORS: [(&str, &str); 4] = [
    ("400", "BAD_REQUEST: malformed JSON, path or query"),
    ("413", "PAYLOAD_TOO_LARGE"),
    ("422", "VALIDATION_FAILED"),
    ("503", "STORE_UNAVAILABLE"),
];
const AUTH_ERRORS: [(&str, &str); 2] = [
    ("401", "UNAUTHORIZED: missing, invalid or expired token"),
    ("403", "FORBIDDEN or ACCOUNT_INACTIVE"),
];

fn complete(mut api: OpenApi, service: &'static str) -> OpenApi {
    api.info.title = format!("halo {service}");
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            add_error_responses(operation);
        }
    }
    api
}

fn add_error_responses(operation: &mut Operation) {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let extra = if secured { &AUTH_ERRORS[..] } else { &[] };
    for (status, description) in COMMON_ERRORS.iter().chain(extra) {
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(*description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                            .build(),
                    )
                    .build()
                    .into()
            });
    }
}
