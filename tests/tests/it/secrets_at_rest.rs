//! Signup tokens and app keys are stored only as hashes: the raw rows and items of both
//! stores, read the way an operator with database access would, hold neither.

use aws_sdk_dynamodb::Client;
use pipes_tests::{Backend, TestApp, raw_rows};
use serde_json::json;

async fn issue_some(t: &TestApp) -> Vec<String> {
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let v = t
            .issue(json!({"redirectUrl": "https://p.example/done"}))
            .await
            .json();
        tokens.push(v["token"].as_str().unwrap().to_owned());
    }
    tokens
}

fn assert_no_plaintext(dump: &str, secrets: &[String]) {
    assert!(!dump.is_empty());
    assert!(
        !dump.contains("tok_"),
        "a signup token is stored in plain text:\n{dump}"
    );
    assert!(
        !dump.contains("ak_"),
        "an app key is stored in plain text:\n{dump}"
    );
    for s in secrets {
        assert!(!dump.contains(&s[4..]), "a secret's body is stored");
    }
}

#[tokio::test]
async fn the_embedded_store_holds_no_token_or_key() {
    let backend = Backend::embedded();
    let db = backend.embedded.as_ref().unwrap().path().to_owned();
    let t = TestApp::spawn(backend).await;
    let mut secrets = issue_some(&t).await;
    secrets.push(t.key.expose().to_owned());
    let dump = raw_rows(&db);
    assert!(
        dump.contains(t.key.hash().as_str()),
        "the key's hash is what is stored"
    );
    assert_no_plaintext(&dump, &secrets);
    // Nor anywhere in the files themselves (database and write-ahead log).
    for entry in std::fs::read_dir(db.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for s in &secrets {
            assert!(!text.contains(s.as_str()));
        }
    }
}

#[tokio::test]
async fn the_dynamodb_table_holds_no_token_or_key() {
    let backend = Backend::aws().await;
    let table = backend.table.clone().unwrap();
    let t = TestApp::spawn(backend).await;
    let mut secrets = issue_some(&t).await;
    secrets.push(t.key.expose().to_owned());
    let client = Client::new(&pipes_tests::emulator().await);
    let items = client.scan().table_name(&table).send().await.unwrap();
    let dump = format!("{:?}", items.items());
    assert!(dump.contains(t.key.hash().as_str()));
    assert!(items.count() >= 1 + 1 + 2 + 3 * 2, "{dump}");
    assert_no_plaintext(&dump, &secrets);
}
