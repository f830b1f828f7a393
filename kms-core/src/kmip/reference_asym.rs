//! The reference CLI's requests for key pairs, signatures and certificates (exchanges
//! 0130–0163, in `tests/fixtures/exchanges`), replayed against this server: each is answered
//! with the reference's response shape. The reference's uids are replaced by the ones this
//! server gave.

use serde_json::{Value, json};

use crate::kmip::kms::Kms;
use crate::kmip::testing::{field, kms, run};

fn exchange(name: &str) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/exchanges");
    let file = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(name))
        .unwrap_or_else(|| panic!("no exchange {name}"));
    let text = std::fs::read_to_string(file.path()).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// The request of exchange `name`, its reference uids replaced as `uids` says.
fn request(name: &str, uids: &[(&str, &str)]) -> Value {
    let mut text = exchange(name)["request"].to_string();
    for (theirs, ours) in uids {
        text = text.replace(theirs, ours);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

async fn answer(kms: &Kms, name: &str, uids: &[(&str, &str)]) -> Value {
    let response = run(kms, "alice", request(name, uids))
        .await
        .unwrap_or_else(|e| panic!("exchange {name}: {e}"));
    let expected = exchange(name)["response"]["tag"].clone();
    assert_eq!(response["tag"], expected, "exchange {name}");
    response
}

fn text(response: &Value, tag: &str) -> String {
    field(response, tag)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

const RSA_SK: &str = "ca7cd06e-ee99-4849-8ae3-b6065677e17e";
const EC_SK: &str = "7d3acecf-d172-44a8-bd4b-dba4104968ac";
const ED_SK: &str = "034e167c-3da4-47c5-8a71-510ab1b0c1ff";
const CERT: &str = "f49793ac-1f82-492f-b224-c3b8efefffe4";

#[tokio::test]
async fn the_reference_cli_requests_are_answered() {
    let kms = kms().await;
    // RSA: create, encrypt both ways, sign and verify, export, revoke, destroy.
    let created = answer(&kms, "0130", &[]).await;
    let sk = text(&created, "PrivateKeyUniqueIdentifier");
    let rsa = [(RSA_SK, sk.as_str())];
    answer(&kms, "0131", &[]).await;
    let sealed = answer(&kms, "0132", &rsa).await;
    let mut decrypt = request("0133", &rsa);
    decrypt["value"][2]["value"] = field(&sealed, "Data").cloned().unwrap_or_default();
    let opened = run(&kms, "alice", decrypt)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(field(&opened, "Data"), Some(&json!("68656C6C6F207273610A")));
    answer(&kms, "0134", &rsa).await;
    let signed = answer(&kms, "0136", &rsa).await;
    let mut verify = request("0137", &rsa);
    verify["value"][2]["value"] = field(&signed, "SignatureData").cloned().unwrap_or_default();
    let verified = run(&kms, "alice", verify)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(field(&verified, "ValidityIndicator"), Some(&json!("Valid")));
    let pkcs8 = answer(&kms, "0138", &rsa).await;
    assert!(pkcs8.to_string().contains(r#""value":"PKCS8""#));
    answer(&kms, "0139", &rsa).await;
    answer(&kms, "0140", &[]).await;
    answer(&kms, "0142", &rsa).await;
    let attributes = answer(&kms, "0143", &rsa).await;
    assert!(attributes.to_string().contains("Deactivated"));
    answer(&kms, "0144", &rsa).await;
    // EC and Ed25519.
    let ec = answer(&kms, "0145", &[]).await;
    let ec_sk = text(&ec, "PrivateKeyUniqueIdentifier");
    answer(&kms, "0147", &[]).await;
    let ec_uids = [(EC_SK, ec_sk.as_str())];
    let ec_signed = answer(&kms, "0148", &ec_uids).await;
    let mut ec_verify = request("0149", &ec_uids);
    ec_verify["value"][2]["value"] = field(&ec_signed, "SignatureData")
        .cloned()
        .unwrap_or_default();
    let ec_verified = run(&kms, "alice", ec_verify)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        field(&ec_verified, "ValidityIndicator"),
        Some(&json!("Valid"))
    );
    answer(&kms, "0153", &ec_uids).await;
    let ed = answer(&kms, "0146", &[]).await;
    let ed_sk = text(&ed, "PrivateKeyUniqueIdentifier");
    answer(&kms, "0150", &[(ED_SK, ed_sk.as_str())]).await;
    // Certificates: self-signed with a new key pair, exported in X509 and PKCS#12, validated,
    // used as the CA of a CSR, encrypted to, revoked and destroyed; a certificate and a
    // PKCS#12 archive from the reference imported.
    let certified = answer(&kms, "0154", &[]).await;
    let cert = text(&certified, "UniqueIdentifier");
    let c = [(CERT, cert.as_str())];
    let x509 = answer(&kms, "0155", &c).await;
    assert!(x509.to_string().contains("CertificateValue"));
    let p12 = answer(&kms, "0156", &c).await;
    assert!(p12.to_string().contains(r#""value":"PKCS12""#));
    let valid = answer(&kms, "0159", &c).await;
    assert_eq!(field(&valid, "ValidityIndicator"), Some(&json!("Valid")));
    answer(&kms, "0160", &c).await;
    answer(&kms, "0157", &[]).await;
    answer(&kms, "0158", &[]).await;
    answer(&kms, "0161", &c).await;
    answer(&kms, "0162", &c).await;
    let revoked = answer(&kms, "0159", &c).await;
    assert_eq!(
        field(&revoked, "ValidityIndicator"),
        Some(&json!("Invalid"))
    );
    answer(&kms, "0163", &c).await;
}
