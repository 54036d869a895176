//! A small spec for the unit tests, written as JSON (what `Spec::load` makes of the YAML): one
//! scope catalogue, one schema, and the operations a test passes in.

use crate::spec::Spec;
use serde_json::{Value, json};

/// A spec whose `paths` are `paths`; the scopes `tasks:read` and `tasks:write`, and the schema
/// `Task`, are declared.
pub fn spec_with(paths: Value) -> Spec {
    Spec::from_raw(json!({
        "openapi": "3.0.3",
        "info": {"title": "test", "version": "1"},
        "components": {
            "securitySchemes": {
                "scopes": {
                    "type": "oauth2",
                    "flows": {"clientCredentials": {
                        "tokenUrl": "https://auth.example/token",
                        "scopes": {
                            "tasks:read": "Read tasks.",
                            "tasks:write": "Create and change tasks.",
                        },
                    }},
                },
            },
            "schemas": {
                "Task": {
                    "type": "object",
                    "description": "A task.",
                    "properties": {"id": {"type": "string", "description": "The task's id."}},
                },
            },
        },
        "paths": paths,
    }))
    .expect("the test spec is a valid OpenAPI document")
}

/// One well-formed operation: `method` on `/tasks`, needing `tasks:read`, answering a `Task`;
/// `extra` is merged over it (a `null` member removes one).
pub fn operation(id: &str, extra: Value) -> Value {
    let mut op = json!({
        "operationId": id,
        "tags": ["tasks"],
        "summary": "A task operation",
        "description": "Does something with a task.",
        "security": [{"scopes": ["tasks:read"]}],
        "responses": {
            "200": {
                "description": "The task.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}},
            },
        },
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        if value.is_null() {
            op.as_object_mut().unwrap().remove(key);
        } else {
            op[key] = value.clone();
        }
    }
    op
}
