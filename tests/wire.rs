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

/// Invalid vectors whose fault JSON Schema cannot express, by name, and why: the decoder's
/// alone.
const DECODER_ONLY: &[(&str, &str)] = &[
    (
        "device does not match the topic",
        "a member compared with the topic",
    ),
    (
        "device info for another device",
        "a member compared with the topic",
    ),
    (
        "command to another device",
        "a member compared with the topic",
    ),
    (
        "resume point on another media's key",
        "a keyed hash of a member, compared with the topic",
    ),
    (
        "clock reply that left before the probe arrived",
        "one member compared with another",
    ),
];

/// The committed schemas accept every valid vector, and refuse every invalid one whose
/// fault JSON Schema can say (all but `DECODER_ONLY`): they refuse what the decoder refuses.
#[test]
fn the_schemas_accept_the_valid_vectors_and_refuse_the_invalid_ones_they_can_judge() {
    let text = std::fs::read_to_string(root().join("tests/vectors/messages.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let validator = |name: &str| {
        let schema = committed(&schema_dir().join(format!("{name}.json")))
            .unwrap_or_else(|| panic!("docs/schema/{name}.json is missing or not JSON"));
        jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{name}.json: {e}"))
    };
    let mut wrong = Vec::new();
    let mut judged = 0;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        // Raw text (sizes, JSON syntax) and topic errors are the decoder's.
        let Some(payload @ Value::Object(obj)) = case.get("payload") else {
            continue;
        };
        if matches!(case["error"].as_str(), Some("topic" | "json" | "too-large")) {
            continue;
        }
        let topic = case["topic"].as_str().unwrap();
        let schema = if obj.contains_key("sealed") {
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
        } else if topic.ends_with("/roster") {
            "roster"
        } else if topic.ends_with("/history/ask") {
            "history-ask"
        } else if topic.ends_with("/history/answer") {
            "history-answer"
        } else if topic.ends_with("/ask") {
            "ask"
        } else {
            "event"
        };
        let v = validator(schema);
        let ok = v.is_valid(payload);
        let decoder_only = DECODER_ONLY.iter().any(|(n, _)| *n == name);
        if case["valid"].as_bool().unwrap() {
            if !ok {
                let why: Vec<String> = v.iter_errors(payload).map(|e| e.to_string()).collect();
                wrong.push(format!(
                    "{name}: valid, but {schema}.json refuses it: {why:?}"
                ));
            }
            continue;
        }
        judged += 1;
        if ok && !decoder_only {
            wrong.push(format!(
                "{name}: invalid ({}), but {schema}.json accepts it",
                case["field"]
            ));
        }
        if !ok && decoder_only {
            wrong.push(format!(
                "{name}: listed as the decoder's alone, yet {schema}.json refuses it"
            ));
        }
    }
    assert!(judged >= 30, "only {judged} invalid vectors judged");
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// The pairing schema takes the pairing vector's messages, and not one without `"v"`.
#[test]
fn the_pairing_schema_accepts_the_pairing_vector() {
    let schema = committed(&schema_dir().join("pairing.json")).unwrap();
    let v = jsonschema::draft202012::new(&schema).unwrap();
    let text = std::fs::read_to_string(root().join("tests/vectors/pairing.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    for m in doc["messages"].as_array().unwrap() {
        let msg: Value = serde_json::from_str(m["payload_text"].as_str().unwrap()).unwrap();
        assert!(v.is_valid(&msg), "{}: {msg}", m["leaf"]);
    }
    assert!(!v.is_valid(&serde_json::json!({"type": "decline", "exchange": "x0123456789ab"})));
}
