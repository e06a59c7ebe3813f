//! docker-compose.yml cannot run here (no Docker engine), so this checks
//! that it agrees with the README and the plan it wires up.

use std::path::Path;

use serde_yaml_ng::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn compose_services_ports_and_plan_agree() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let compose: Value = serde_yaml_ng::from_str(&text).unwrap();
    let services = compose.get("services").and_then(Value::as_mapping).expect("services");
    let pg = &services[&Value::from("postgres")];
    assert!(pg["image"].as_str().unwrap().starts_with("postgres:16"), "PostgreSQL 16");
    let cmd: Vec<&str> = pg["command"].as_sequence().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(cmd.contains(&"wal_level=logical"), "{cmd:?}");
    let my = &services[&Value::from("mysql")];
    assert!(my["image"].as_str().unwrap().starts_with("mysql:8.4"));
    assert_eq!(pg["ports"][0].as_str(), Some("5432:5432"));
    assert_eq!(my["ports"][0].as_str(), Some("3306:3306"));
    let x = &services[&Value::from("xdb")];
    assert_eq!(x["build"].as_str(), Some("."));
    assert!(root().join("Dockerfile").exists());
    let xcmd: Vec<&str> = x["command"].as_sequence().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(xcmd, ["check", "--plan", "/plans/pg-to-mysql.yaml"]);

    // The plan it runs parses with the compose environment and points at the compose services.
    let env = x["environment"].as_mapping().unwrap();
    let get = |k: &str| env[&Value::from(k)].as_str().unwrap().to_string();
    let plan_text = std::fs::read_to_string(root().join("cutover-plans/pg-to-mysql.yaml")).unwrap();
    let filled = xdb::plan::interpolate(&plan_text, |n| match n {
        "SOURCE_PASSWORD" | "TARGET_PASSWORD" | "SOURCE_HOST" | "TARGET_HOST" | "SOURCE_SSLMODE"
        | "TARGET_SSL_MODE" => Some(get(n)),
        _ => None,
    })
    .unwrap();
    assert!(filled.contains("@postgres:5432/shop") && filled.contains("@mysql:3306/shop"), "{filled}");
    // Authenticated TLS unless the environment turns it off (compose does, on its private network).
    assert!(plan_text.contains("sslmode=${SOURCE_SSLMODE:-verify-full}"), "{plan_text}");
    assert!(plan_text.contains("ssl-mode=${TARGET_SSL_MODE:-VERIFY_IDENTITY}"), "{plan_text}");
    assert!(filled.contains("sslmode=disable") && filled.contains("ssl-mode=DISABLED"), "{filled}");
    assert_eq!(get("SOURCE_PASSWORD"), pg["environment"]["POSTGRES_PASSWORD"].as_str().unwrap());
    assert_eq!(get("TARGET_PASSWORD"), my["environment"]["MYSQL_PASSWORD"].as_str().unwrap());
    let plan = xdb::plan::Plan::parse(&filled, Path::new("pg-to-mysql.yaml")).unwrap();
    assert_eq!(plan.target.url.kind_name(), "mysql");

    // The README shows the same commands.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains("docker compose run --rm xdb check --plan /plans/pg-to-mysql.yaml"),
        "README lacks the compose command"
    );
}
