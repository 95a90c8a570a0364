//! The wire contract: the shared test vectors and the committed JSON Schemas.

use std::path::{Path, PathBuf};

use continuity::wire;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bytes a vector describes.
fn payload(case: &Value) -> Vec<u8> {
    let mut bytes = match (case.get("payload_text"), case.get("payload")) {
        (Some(Value::String(t)), _) => t.clone().into_bytes(),
        (_, Some(v)) => serde_json::to_vec(v).unwrap(),
        _ => panic!("vector without a payload: {case}"),
    };
    if let Some(n) = case.get("pad_to").and_then(Value::as_u64) {
        let close = bytes.pop().expect("padded payloads end in '}'");
        while bytes.len() + 1 < n as usize {
            bytes.push(b' ');
        }
        bytes.push(close);
    }
    bytes
}

#[test]
fn every_vector_gets_its_verdict() {
    let text = std::fs::read_to_string(root().join("tests/vectors/messages.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 40, "the vectors file looks truncated");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let topic = case["topic"].as_str().unwrap();
        let result = wire::decode(topic, &payload(case));
        match (case["valid"].as_bool().unwrap(), result) {
            (true, Ok(_)) => {}
            (true, Err(e)) => failures.push(format!("{name}: should decode, got: {e}")),
            (false, Ok(m)) => failures.push(format!("{name}: should fail, decoded {m:?}")),
            (false, Err(e)) => {
                let want = case["error"].as_str().unwrap();
                if e.code() != want {
                    failures.push(format!("{name}: want {want}, got {} ({e})", e.code()));
                }
                if let Some(field) = case.get("field").and_then(Value::as_str)
                    && e.field() != Some(field)
                {
                    failures.push(format!(
                        "{name}: want field {field}, got {:?} ({e})",
                        e.field()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn schema_dir() -> PathBuf {
    root().join("docs/schema")
}

fn committed(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// The committed schemas are what the Rust types generate. After changing a message type,
/// regenerate them with `make schemas` (UPDATE_SCHEMAS=1) and review the diff.
#[test]
fn committed_schemas_match_the_types() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut drift = Vec::new();
    let all = wire::schemas()
        .into_iter()
        .chain([("pairing", continuity::security::pair::schema())]);
    for (name, schema) in all {
        let path = schema_dir().join(format!("{name}.json"));
        if update {
            std::fs::create_dir_all(schema_dir()).unwrap();
            let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
            continue;
        }
        if committed(&path).as_ref() != Some(&schema) {
            drift.push(path.display().to_string());
        }
    }
    assert!(
        drift.is_empty(),
        "these schemas differ from the Rust types (run `make schemas` and commit): {drift:?}"
    );
}

/// Each valid vector also validates against its committed schema's required fields: a
/// cheap cross-check that the schemas describe what the decoder accepts.
#[test]
fn schemas_list_the_required_fields_of_valid_vectors() {
    let text = std::fs::read_to_string(root().join("tests/vectors/messages.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    for case in doc["cases"].as_array().unwrap() {
        if !case["valid"].as_bool().unwrap() {
            continue;
        }
        let Some(payload @ Value::Object(obj)) = case.get("payload") else {
            continue;
        };
        let topic = case["topic"].as_str().unwrap();
        let name = if obj.contains_key("sealed") {
            "sealed-envelope"
        } else if topic.ends_with("/availability") {
            "availability"
        } else if topic.ends_with("/info") {
            "device-info"
        } else if topic.ends_with("/state") {
            "session-state"
        } else if topic.ends_with("/resume") {
            "resume-point"
        } else if topic.ends_with("/inbox") {
            "command"
        } else {
            "event"
        };
        let schema = committed(&schema_dir().join(format!("{name}.json")))
            .unwrap_or_else(|| panic!("docs/schema/{name}.json is missing"));
        for req in schema["required"].as_array().unwrap() {
            let field = req.as_str().unwrap();
            assert!(
                payload.get(field).is_some(),
                "{}: the schema {name} requires '{field}'",
                case["name"]
            );
        }
    }
}
