//! The one list of KMIP operations: each operation's wire name, the grant that lets a user
//! other than the owner run it, and (through its name) its metric label. Adding an operation
//! is one line here and one file under `ops/`.

macro_rules! operations {
    ($($variant:ident => $name:literal, $grant:expr;)*) => {
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
    Create => "Create", Some("create");
    CreateKeyPair => "CreateKeyPair", Some("create");
    Register => "Register", Some("create");
    Import => "Import", Some("import");
    Certify => "Certify", Some("certify");
    Get => "Get", Some("get");
    Export => "Export", Some("export");
    GetAttributes => "GetAttributes", Some("getattributes");
    GetAttributeList => "GetAttributeList", Some("getattributes");
    SetAttribute => "SetAttribute", Some("setattribute");
    AddAttribute => "AddAttribute", Some("addattribute");
    ModifyAttribute => "ModifyAttribute", Some("modifyattribute");
    DeleteAttribute => "DeleteAttribute", Some("deleteattribute");
    Locate => "Locate", Some("locate");
    Activate => "Activate", Some("activate");
    Revoke => "Revoke", Some("revoke");
    Destroy => "Destroy", Some("destroy");
    ReKey => "ReKey", Some("rekey");
    ReKeyKeyPair => "ReKeyKeyPair", Some("rekey");
    Encrypt => "Encrypt", Some("encrypt");
    Decrypt => "Decrypt", Some("decrypt");
    Sign => "Sign", Some("sign");
    SignatureVerify => "SignatureVerify", Some("signatureverify");
    Mac => "MAC", Some("mac");
    MacVerify => "MACVerify", Some("mac");
    Hash => "Hash", Some("hash");
    DeriveKey => "DeriveKey", Some("derivekey");
    Validate => "Validate", Some("validate");
    RngRetrieve => "RNGRetrieve", None;
    RngSeed => "RNGSeed", None;
    Query => "Query", None;
    DiscoverVersions => "DiscoverVersions", None;
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
