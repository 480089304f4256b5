//! `GET /openapi.json`: the document collected from the route registrations (so it cannot drift
//! from the routes), completed here with what the macros cannot say: our `info`, the bearer
//! scheme, and every operation's error answers. Each error status gets one response whose body
//! schema lists exactly the codes the operation answers with it: the codes its shape implies
//! (a body, path or query parameters, a bearer token, a role) plus the ones its handler declares
//! in `x-error-codes` (consumed here, not served).

use crate::error::ErrorCode;
use actix_web::dev::ResourceDef;
use actix_web::{web, HttpResponse, ResponseError};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use utoipa::openapi::OpenApi;

/// The operation extension in which a handler lists the codes its use case can answer.
pub const ERROR_CODES: &str = "x-error-codes";

const ERROR_BODY: &str = "ErrorBody";

/// What `Uuid::parse_str` (and so every uuid in a path or body) accepts: hyphenated, simple,
/// braced or URN (`urn:uuid:`, in any case), hex digits in any case. `format: uuid` alone is an annotation in JSON Schema 2020-12; the
/// pattern makes it a constraint, on every `format: uuid` of the document.
pub const UUID_PATTERN: &str = concat!(
    "^(?:[0-9A-Fa-f]{32}",
    "|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
    "|\\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\\}",
    "|[Uu][Rr][Nn]:[Uu][Uu][Ii][Dd]:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$"
);

/// Where an answer's id feeds other operations (OpenAPI links; schemathesis' stateful phase
/// follows them): operation, status, JSON pointer into its body, the operations whose `{id}`
/// it is. Targets missing from a service's document are skipped.
const LINKS: &[(&str, &str, &str, &[&str])] = &[
    (
        "chat_request",
        "201",
        "/session_id",
        &[
            "client_session",
            "pay",
            "extend",
            "client_end",
            "accept",
            "reject",
            "mitra_session",
            "mitra_end",
        ],
    ),
    (
        "create_mitra",
        "201",
        "/id",
        &["patch_mitra", "force_offline"],
    ),
];

/// The served document, rendered once per worker, or why it could not be.
struct Document(Result<String, String>);

/// The routes of the document (and `/openapi.json`) with their methods: what lets
/// `error::unrouted` answer 405 with `Allow` rather than 404.
pub struct Routes(Vec<(ResourceDef, Vec<String>)>);

impl Routes {
    fn of(doc: &Value) -> Self {
        let mut routes = vec![(ResourceDef::new("/openapi.json"), vec!["GET".to_owned()])];
        if let Some(paths) = doc["paths"].as_object() {
            for (path, item) in paths {
                let methods = item
                    .as_object()
                    .map(|ops| ops.keys().map(|m| m.to_uppercase()).collect())
                    .unwrap_or_default();
                routes.push((ResourceDef::new(path.as_str()), methods));
            }
        }
        Self(routes)
    }

    /// The methods `path` has routes for, sorted; empty for an unknown path.
    pub fn methods_of(&self, path: &str) -> Vec<String> {
        let mut methods: Vec<String> = self
            .0
            .iter()
            .filter(|(def, _)| def.is_match(path))
            .flat_map(|(_, methods)| methods.iter().cloned())
            .collect();
        methods.sort();
        methods.dedup();
        methods
    }
}

/// Completes `api` and serves it at `/openapi.json`. A document that cannot be completed (a
/// handler declared an unknown code) is a bug: logged, and answered 500 `INTERNAL`.
pub fn serve_openapi(cfg: &mut web::ServiceConfig, api: OpenApi, service: &'static str) {
    let document = document(api, service);
    let routes = document
        .as_ref()
        .map_or_else(|_| Routes(Vec::new()), Routes::of);
    let document = document.map(|doc| doc.to_string());
    if let Err(problem) = &document {
        tracing::error!(%problem, "the API document is broken");
    }
    cfg.app_data(web::Data::new(Document(document)))
        .app_data(web::Data::new(routes))
        .route("/openapi.json", web::get().to(openapi_json));
}

async fn openapi_json(document: web::Data<Document>) -> HttpResponse {
    match &document.0 {
        Ok(json) => HttpResponse::Ok()
            .content_type("application/json")
            .body(json.clone()),
        Err(_) => crate::ApiError::new(ErrorCode::Internal, "internal error").error_response(),
    }
}

/// The completed document of `service` ("public-api" or "internal-api").
pub fn document(api: OpenApi, service: &str) -> Result<Value, String> {
    let mut doc = serde_json::to_value(&api).map_err(|e| format!("cannot render: {e}"))?;
    doc["info"] = info(service);
    doc["tags"] = tags(service);
    let components = doc
        .as_object_mut()
        .ok_or("the document is not an object")?
        .entry("components")
        .or_insert_with(|| json!({}));
    components["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from an OTP verify (customer, mitra), an operator \
                login (cc) or a refresh. The scopes of an operation's requirement name the role \
                its token must carry; a token of another role answers 403 FORBIDDEN."
        }
    });
    if components.get("schemas").is_none() {
        components["schemas"] = json!({});
    }
    components["schemas"][ERROR_BODY] = error_body_schema();
    // utoipa 5.5 writes `min_properties = 1` as `maxProperties: 1`; the body takes 1 to 7 keys.
    if let Some(patch) = components["schemas"].get_mut("SettingsPatch") {
        patch["minProperties"] = json!(1);
        if let Some(patch) = patch.as_object_mut() {
            patch.remove("maxProperties");
        }
    }

    let paths = doc["paths"]
        .as_object_mut()
        .ok_or("the document has no paths")?;
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            complete_operation(operation)
                .map_err(|e| format!("{} {path}: {e}", method.to_uppercase()))?;
        }
    }
    add_links(paths);
    constrain_uuids(&mut doc);
    Ok(doc)
}

/// Adds `UUID_PATTERN` to every string schema of `format: uuid`.
fn constrain_uuids(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str) == Some("uuid") {
                map.insert("pattern".to_owned(), json!(UUID_PATTERN));
            }
            map.values_mut().for_each(constrain_uuids);
        }
        Value::Array(items) => items.iter_mut().for_each(constrain_uuids),
        _ => {}
    }
}

fn add_links(paths: &mut Map<String, Value>) {
    let operations: Vec<String> = paths
        .values()
        .filter_map(Value::as_object)
        .flat_map(|item| item.values())
        .filter_map(|op| op["operationId"].as_str().map(str::to_owned))
        .collect();
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for (source, status, pointer, targets) in LINKS {
            if *source != id {
                continue;
            }
            let links: Map<String, Value> = targets
                .iter()
                .filter(|target| operations.iter().any(|op| op == *target))
                .map(|target| {
                    let link = json!({
                        "operationId": target,
                        "parameters": { "id": format!("$response.body#{pointer}") }
                    });
                    ((*target).to_owned(), link)
                })
                .collect();
            if let Some(response) = operation["responses"].get_mut(*status) {
                response["links"] = Value::Object(links);
            }
        }
    }
}

fn info(service: &str) -> Value {
    let (title, about) = match service {
        "internal-api" => (
            "Halo internal API",
            "The control centre's API (operators, role `cc`): mitra accounts, reroutes, \
             operator settings and their history, dashboard counts, the Valkey mirror's drift \
             report and reseed.",
        ),
        _ => (
            "Halo public API",
            "The apps' API: phone OTP login for customers (`client`) and mitras, the mitra's \
             online status and heartbeat, the availability beacon, and chat sessions from \
             request to end.",
        ),
    };
    json!({
        "title": title,
        "description": format!(
            "{about}\n\nEvery error answers `{{\"error\":{{\"code\":\"UPPER_SNAKE\",\"message\":\"...\"}}}}`; \
             each operation lists, per status, the codes it can answer. Any operation may \
             also answer 500 `INTERNAL` (a server fault, logged; never a client's mistake); a \
             method a path does not have answers 405 `METHOD_NOT_ALLOWED` with `Allow`. \
             `/healthz`, `/readyz` and `/metrics` are the probes."
        ),
        "version": env!("CARGO_PKG_VERSION"),
        "license": {
            "name": "Proprietary (UNLICENSED): not licensed for use, copying or distribution outside Halo"
        }
    })
}

fn tags(service: &str) -> Value {
    let tags: &[(&str, &str)] = match service {
        "internal-api" => &[
            ("operator", "The control centre (role cc)"),
            ("probes", "Liveness, readiness and metrics"),
        ],
        _ => &[
            ("auth", "OTP login, token refresh and logout"),
            ("availability", "The beacon the customer app polls"),
            ("mitra", "The mitra app (role mitra)"),
            ("client", "The customer app (role customer)"),
            ("probes", "Liveness, readiness and metrics"),
        ],
    };
    tags.iter()
        .map(|(name, description)| json!({ "name": name, "description": description }))
        .collect()
}

/// Adds one response per error status to `operation` and consumes its `x-error-codes`.
fn complete_operation(operation: &mut Value) -> Result<(), String> {
    let Some(op) = operation.as_object_mut() else {
        return Ok(());
    };
    let mut codes = implied_codes(op);
    if let Some(declared) = op.remove(ERROR_CODES) {
        let declared = declared
            .as_array()
            .ok_or_else(|| format!("{ERROR_CODES} is not an array"))?;
        for wire in declared {
            let wire = wire.as_str().unwrap_or_default();
            let code = ErrorCode::from_wire(wire)
                .ok_or_else(|| format!("{ERROR_CODES}: unknown code {wire:?}"))?;
            codes.push(code);
        }
    }
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in codes {
        let list = by_status.entry(code.spec().1.as_u16()).or_default();
        if !list.contains(&code) {
            list.push(code);
        }
    }
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("responses is not an object")?;
    for (status, codes) in by_status {
        let status = status.to_string();
        if responses.contains_key(&status) {
            return Err(format!("status {status} is declared twice"));
        }
        responses.insert(status, error_response(&codes));
    }
    Ok(())
}

/// What the shape of an operation makes it answer, whatever its handler does: a JSON body can
/// be malformed, too large or of the wrong shape; a path or query can fail to parse; a bearer
/// token can be missing or bad; a role-bound token can be of another role.
fn implied_codes(op: &Map<String, Value>) -> Vec<ErrorCode> {
    let mut codes = Vec::new();
    let parameters = op.get("parameters").and_then(Value::as_array);
    let parsed_parameters = parameters.is_some_and(|ps| {
        ps.iter()
            .any(|p| matches!(p["in"].as_str(), Some("path" | "query")))
    });
    if parsed_parameters {
        codes.push(ErrorCode::BadRequest);
    }
    if op.contains_key("requestBody") {
        codes.extend([
            ErrorCode::BadRequest,
            ErrorCode::PayloadTooLarge,
            ErrorCode::ValidationFailed,
        ]);
    }
    let requirements = op
        .get("security")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !requirements.is_empty() {
        codes.push(ErrorCode::Unauthorized);
    }
    let role_bound = requirements.iter().any(|requirement| {
        requirement
            .as_object()
            .is_some_and(|schemes| schemes.values().any(|roles| roles != &json!([])))
    });
    if role_bound {
        codes.push(ErrorCode::Forbidden);
    }
    codes
}

/// The error body, every code.
fn error_body_schema() -> Value {
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.spec().0).collect();
    json!({
        "type": "object",
        "description": "Every error answer.",
        "required": ["error"],
        "additionalProperties": false,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": false,
                "properties": {
                    "code": { "type": "string", "enum": all },
                    "message": {
                        "type": "string",
                        "description": "For people; may change. Programs branch on `code`."
                    },
                    "open_session_id": {
                        "type": "string",
                        "format": "uuid",
                        "description": "With OPEN_REQUEST_EXISTS only: the customer's open request."
                    }
                }
            }
        }
    })
}

/// One status's answer: the error body narrowed to `codes`, each code described.
fn error_response(codes: &[ErrorCode]) -> Value {
    let wire: Vec<&str> = codes.iter().map(|c| c.spec().0).collect();
    let description = codes
        .iter()
        .map(|c| format!("`{}`: {}", c.spec().0, c.meaning()))
        .collect::<Vec<_>>()
        .join("; ");
    let mut response = json!({
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [{ "$ref": format!("#/components/schemas/{ERROR_BODY}") }],
                    "properties": {
                        "error": { "properties": { "code": { "enum": wire } } }
                    }
                }
            }
        }
    });
    if codes.contains(&ErrorCode::RateLimited) {
        response["headers"] = json!({
            "Retry-After": {
                "description": "With RATE_LIMITED: whole seconds until a retry can succeed.",
                "schema": { "type": "integer", "minimum": 1 }
            }
        });
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]

    use super::*;
    use halo_domain::SettingKey;
    use utoipa::PartialSchema;

    #[test]
    fn the_uuid_pattern_accepts_what_the_uuid_parser_accepts() {
        let pattern = regex::Regex::new(UUID_PATTERN).unwrap();
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let cases = [
            id.to_owned(),
            id.to_uppercase(),
            id.replace('-', ""),
            format!("{{{id}}}"),
            format!("urn:uuid:{id}"),
            format!("URN:UUID:{id}"),
            format!("urn:Uuid:{id}"),
            format!("urn:uid:{id}"),
            format!("urn:uuid:{}", id.replace('-', "")),
            format!("{{{}}}", id.replace('-', "")),
            format!("{id} "),
            format!(" {id}"),
            format!("{id}\n"),
            id[1..].to_owned(),
            format!("{id}0"),
            id.replace('6', "g"),
            id.replacen('-', "", 1),
            String::new(),
            "-".repeat(36),
        ];
        for case in cases {
            assert_eq!(
                pattern.is_match(&case),
                uuid::Uuid::parse_str(&case).is_ok(),
                "{case:?}"
            );
        }
    }

    /// The pattern of `property` in the schema of `T`, compiled.
    fn pattern_of<T: PartialSchema>(property: &str) -> regex::Regex {
        let schema = serde_json::to_value(T::schema()).unwrap();
        regex::Regex::new(schema["properties"][property]["pattern"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn the_phone_pattern_accepts_what_the_phone_parser_accepts() {
        let patterns = [
            pattern_of::<crate::dto::PhoneBody>("phone"),
            pattern_of::<crate::dto::VerifyBody>("phone"),
            pattern_of::<crate::dto::NewMitra>("phone"),
        ];
        let cases = [
            "+6281234567890",
            "+62 812-3456-7890",
            " +62812345",
            "-+1234567 8-",
            "+1234567",
            "+1234567890123456",
            "+123456789012345",
            "6281234567890",
            "++6281234567890",
            "+62812345678a",
            "+62812345678\n",
            "+62\t812345678",
            "+６２８１２３４５６７８",
            "",
        ];
        for pattern in &patterns {
            for case in cases {
                assert_eq!(
                    pattern.is_match(case),
                    halo_domain::Phone::parse(case).is_ok(),
                    "{case:?}"
                );
            }
        }
    }

    #[test]
    fn the_display_name_pattern_and_length_are_the_handler_rule() {
        let pattern = pattern_of::<crate::dto::NewMitra>("display_name");
        let long = "a".repeat(101);
        let cases = [
            "Sari",
            " Sari ",
            "\u{3000}Sari",
            "Sa\u{0}ri",
            "Sari\n",
            "Sa\u{85}ri",
            "Sa\u{7f}ri",
            "   ",
            "\u{a0}\u{2028}",
            "\u{feff}",
            "\u{200b}",
            "",
            &long[1..],
            &long,
        ];
        for case in cases {
            let length = case.chars().count();
            let documented = pattern.is_match(case) && (1..=100).contains(&length);
            assert_eq!(
                documented,
                crate::internal::display_name(case).is_ok(),
                "{case:?}"
            );
        }
    }

    #[test]
    fn every_code_has_one_wire_form() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.spec().0), Some(code));
        }
        assert_eq!(ErrorCode::from_wire("NOPE"), None);
    }

    #[test]
    fn the_stream_documents_name_every_event_shape() {
        let api = utoipa::openapi::OpenApiBuilder::new()
            .components(Some(
                utoipa::openapi::ComponentsBuilder::new()
                    .schema_from::<crate::dto::MitraEvent>()
                    .schema_from::<crate::dto::ClientEvent>()
                    .build(),
            ))
            .build();
        let doc = document(api, "public-api").unwrap();
        let schemas = &doc["components"]["schemas"];
        let shapes = |name: &str| schemas[name]["oneOf"].to_string();
        for shape in [
            "OfferEvent",
            "OfferWithdrawnEvent",
            "MitraSessionEvent",
            "AwayEvent",
        ] {
            assert!(shapes("MitraEvent").contains(shape), "{shape}");
        }
        for shape in ["ClientSessionEvent", "AvailabilityEvent"] {
            assert!(shapes("ClientEvent").contains(shape), "{shape}");
        }
    }

    #[test]
    fn settings_patch_ranges_are_the_domain_ranges() {
        let schema = serde_json::to_value(crate::dto::SettingsPatch::schema()).unwrap();
        for key in SettingKey::ALL {
            let field = &schema["properties"][key.as_str()];
            let (min, max) = key.range();
            assert_eq!(field["minimum"], json!(min), "{key}");
            assert_eq!(field["maximum"], json!(max), "{key}");
        }
        assert_eq!(
            schema["properties"].as_object().unwrap().len(),
            SettingKey::ALL.len()
        );
        let api = utoipa::openapi::OpenApiBuilder::new()
            .components(Some(
                utoipa::openapi::ComponentsBuilder::new()
                    .schema_from::<crate::dto::SettingsPatch>()
                    .build(),
            ))
            .build();
        let doc = document(api, "internal-api").unwrap();
        let patch = &doc["components"]["schemas"]["SettingsPatch"];
        assert_eq!(patch["minProperties"], json!(1));
        assert_eq!(patch.get("maxProperties"), None);
        assert_eq!(patch["additionalProperties"], json!(false));
        assert_eq!(
            patch["properties"]["stale_after_seconds"]["type"],
            json!("integer")
        );
    }

    #[test]
    fn an_operation_gets_the_codes_of_its_shape_and_its_handler() {
        let mut op = json!({
            "parameters": [{ "name": "id", "in": "path" }],
            "security": [{ "bearer": ["mitra"] }],
            "responses": { "200": { "description": "ok" } },
            ERROR_CODES: ["NOT_FOUND", "REQUEST_TAKEN", "AT_CAPACITY"],
        });
        complete_operation(&mut op).unwrap();
        let codes = |status: &str| {
            op["responses"][status]["content"]["application/json"]["schema"]["properties"]["error"]
                ["properties"]["code"]["enum"]
                .clone()
        };
        assert_eq!(codes("400"), json!(["BAD_REQUEST"]));
        assert_eq!(codes("401"), json!(["UNAUTHORIZED"]));
        assert_eq!(codes("403"), json!(["FORBIDDEN"]));
        assert_eq!(codes("404"), json!(["NOT_FOUND"]));
        assert_eq!(codes("409"), json!(["REQUEST_TAKEN", "AT_CAPACITY"]));
        assert!(op.get(ERROR_CODES).is_none());
    }

    #[test]
    fn an_unknown_code_breaks_the_document() {
        let mut op = json!({ "responses": {}, ERROR_CODES: ["NOT_A_CODE"] });
        assert!(complete_operation(&mut op).is_err());
    }
}
