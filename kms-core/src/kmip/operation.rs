//! The one list of KMIP operations: each operation's wire name, the grant that lets a user
//! other than the owner run it, whether this server implements it, and (through its name) its
//! metric label. Adding an operation is this line, its file under `ops/` and its dispatch arm.

macro_rules! operations {
    ($($variant:ident => $name:literal, $grant:expr, $implemented:literal;)*) => {
        /// A KMIP operation this server knows by name (implemented or not).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $($variant),*
        }

        impl Operation {
            pub const ALL: &'static [Operation] = &[$(Operation::$variant),*];

            /// The KMIP name, as in a request's tag or a batch item's `Operation`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$variant => $name),*
                }
            }

            /// True when this server runs it (the others are answered `Operation_Not_Supported`
            /// and left out of Query).
            pub fn implemented(self) -> bool {
                match self {
                    $(Operation::$variant => $implemented),*
                }
            }

            /// The access right (the reference's names, as `/access/grant` takes them) a user
            /// other than the owner needs to run it on an object; `None` when it acts on no
            /// stored object.
            pub fn grant(self) -> Option<&'static str> {
                match self {
                    $(Operation::$variant => $grant),*
                }
            }
        }
    };
}

operations! {
    Create => "Create", Some("create"), true;
    CreateKeyPair => "CreateKeyPair", Some("create"), true;
    Register => "Register", Some("create"), true;
    Import => "Import", Some("import"), true;
    Certify => "Certify", Some("certify"), true;
    Get => "Get", Some("get"), true;
    Export => "Export", Some("export"), true;
    GetAttributes => "GetAttributes", Some("getattributes"), true;
    GetAttributeList => "GetAttributeList", Some("getattributes"), true;
    SetAttribute => "SetAttribute", Some("setattribute"), true;
    AddAttribute => "AddAttribute", Some("addattribute"), true;
    ModifyAttribute => "ModifyAttribute", Some("modifyattribute"), true;
    DeleteAttribute => "DeleteAttribute", Some("deleteattribute"), true;
    Locate => "Locate", Some("locate"), true;
    Activate => "Activate", Some("activate"), true;
    Revoke => "Revoke", Some("revoke"), true;
    Destroy => "Destroy", Some("destroy"), true;
    ReKey => "ReKey", Some("rekey"), true;
    ReKeyKeyPair => "ReKeyKeyPair", Some("rekey"), true;
    Encrypt => "Encrypt", Some("encrypt"), true;
    Decrypt => "Decrypt", Some("decrypt"), true;
    Sign => "Sign", Some("sign"), true;
    SignatureVerify => "SignatureVerify", Some("signatureverify"), true;
    Mac => "MAC", Some("mac"), true;
    MacVerify => "MACVerify", Some("mac"), true;
    Hash => "Hash", Some("hash"), true;
    DeriveKey => "DeriveKey", Some("derivekey"), true;
    Validate => "Validate", Some("validate"), true;
    RngRetrieve => "RNGRetrieve", None, true;
    RngSeed => "RNGSeed", None, true;
    Query => "Query", None, true;
    DiscoverVersions => "DiscoverVersions", None, true;
}

impl Operation {
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|op| op.name() == name)
    }

    /// Metric label: the KMIP name (a bounded set).
    pub fn label(self) -> &'static str {
        self.name()
    }

    /// Every grant name `/access/grant` accepts, each once, in the order of [`Self::ALL`].
    pub fn grant_names() -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for grant in Self::ALL.iter().filter_map(|op| op.grant()) {
            if !names.contains(&grant) {
                names.push(grant);
            }
        }
        names
    }

    /// The operation a grant name stands for when the access rule is asked about it.
    pub fn for_grant(grant: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|op| op.grant() == Some(grant))
    }
}

#[cfg(test)]
mod tests {
    use super::Operation;

    #[test]
    fn names_round_trip_and_grants_match_the_reference_list() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.name()), Some(*op));
        }
        assert_eq!(Operation::parse("Frobnicate"), None);
        let mut grants = Operation::grant_names();
        grants.sort_unstable();
        let mut reference = vec![
            "create",
            "certify",
            "decrypt",
            "derivekey",
            "destroy",
            "encrypt",
            "export",
            "get",
            "getattributes",
            "hash",
            "import",
            "locate",
            "mac",
            "revoke",
            "rekey",
            "sign",
            "signatureverify",
            "validate",
            "setattribute",
            "modifyattribute",
            "addattribute",
            "deleteattribute",
            "activate",
        ];
        reference.sort_unstable();
        assert_eq!(grants, reference);
    }
}
