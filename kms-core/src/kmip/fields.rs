//! Reading a request structure into a typed request: each child is taken by name with its
//! expected type, and [`Fields::finish`] refuses, by name, any child nobody took. A field this
//! server does not implement can therefore never be silently ignored.

use time::OffsetDateTime;

use crate::error::KmsError;
use crate::kmip::names::valid_names;
use crate::kmip::ttlv::{Enumeration, Ttlv, Value};

/// The children of one structure, with a mark for each one taken.
pub struct Fields<'a> {
    children: &'a [Ttlv],
    taken: Vec<bool>,
    /// Where this structure is, for messages: `Encrypt`, `Create.Attributes`, ...
    path: String,
}

fn wrong_type(path: &str, tag: &str, expected: &str) -> KmsError {
    KmsError::InvalidRequest(format!("{path}.{tag} must be a {expected}"))
}

impl<'a> Fields<'a> {
    /// The fields of `node`, which must be a structure.
    pub fn of(node: &'a Ttlv, path: impl Into<String>) -> Result<Self, KmsError> {
        let path = path.into();
        match &node.value {
            Value::Structure(children) => Ok(Self {
                children,
                taken: vec![false; children.len()],
                path,
            }),
            _ => Err(KmsError::InvalidRequest(format!(
                "{path} must be a Structure"
            ))),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The one child named `tag`, marked taken (a repeated single field is refused).
    fn one(&mut self, tag: &str) -> Result<Option<&'a Ttlv>, KmsError> {
        let mut found = None;
        for (i, child) in self.children.iter().enumerate() {
            if child.tag == tag {
                if found.is_some() {
                    return Err(KmsError::InvalidRequest(format!(
                        "{}.{tag} is given more than once",
                        self.path
                    )));
                }
                self.taken[i] = true;
                found = Some(child);
            }
        }
        Ok(found)
    }

    /// The one child named `tag`, of any type, marked taken.
    pub fn node(&mut self, tag: &str) -> Result<Option<&'a Ttlv>, KmsError> {
        self.one(tag)
    }

    /// Every child named `tag`, marked taken.
    pub fn all(&mut self, tag: &str) -> Vec<&'a Ttlv> {
        let mut out = Vec::new();
        for (i, child) in self.children.iter().enumerate() {
            if child.tag == tag {
                self.taken[i] = true;
                out.push(child);
            }
        }
        out
    }

    pub fn text(&mut self, tag: &str) -> Result<Option<&'a str>, KmsError> {
        match self.one(tag)?.map(|c| &c.value) {
            None => Ok(None),
            Some(Value::TextString(s)) => Ok(Some(s)),
            Some(_) => Err(wrong_type(&self.path, tag, "TextString")),
        }
    }

    pub fn int(&mut self, tag: &str) -> Result<Option<i32>, KmsError> {
        match self.one(tag)?.map(|c| &c.value) {
            None => Ok(None),
            Some(Value::Integer(v)) => Ok(Some(*v)),
            Some(_) => Err(wrong_type(&self.path, tag, "Integer")),
        }
    }

    pub fn long(&mut self, tag: &str) -> Result<Option<i64>, KmsError> {
        match self.one(tag)?.map(|c| &c.value) {
            None => Ok(None),
            Some(Value::LongInteger(v)) => Ok(Some(*v)),
            Some(Value::Integer(v)) => Ok(Some(i64::from(*v))),
            Some(_) => Err(wrong_type(&self.path, tag, "LongInteger")),
        }
    }

    pub fn bytes(&mut self, tag: &str) -> Result<Option<&'a [u8]>, KmsError> {
        match self.one(tag)?.map(|c| &c.value) {
            None => Ok(None),
            Some(Value::ByteString(v)) => Ok(Some(v)),
            Some(_) => Err(wrong_type(&self.path, tag, "ByteString")),
        }
    }

    pub fn boolean(&mut self, tag: &str) -> Result<Option<bool>, KmsError> {
        match self.one(tag)?.map(|c| &c.value) {
            None => Ok(None),
            Some(Value::Boolean(v)) => Ok(Some(*v)),
            Some(_) => Err(wrong_type(&self.path, tag, "Boolean")),
        }
    }

    /// A DateTime, in Unix seconds.
    pub fn date(&mut self, tag: &str) -> Result<Option<i64>, KmsError> {
        match self.one(tag)?.map(|c| &c.value) {
            None => Ok(None),
            Some(Value::DateTime(t)) => Ok(Some(OffsetDateTime::unix_timestamp(*t))),
            Some(_) => Err(wrong_type(&self.path, tag, "DateTime")),
        }
    }

    /// An enumeration, by name; a name outside the tag's KMIP list is a Codec_Error.
    pub fn enumeration(&mut self, tag: &str) -> Result<Option<&'a str>, KmsError> {
        let path = self.path.clone();
        self.one(tag)?.map(|c| enum_name(c, &path)).transpose()
    }

    /// A nested structure's fields (the caller finishes them too).
    pub fn structure(&mut self, tag: &str) -> Result<Option<Fields<'a>>, KmsError> {
        let path = format!("{}.{tag}", self.path);
        self.one(tag)?.map(|c| Fields::of(c, path)).transpose()
    }

    /// Marks `tag` as taken without using it. Only for fields whose value cannot change what
    /// the request does (each call site says why).
    pub fn accept(&mut self, tag: &str) {
        for (i, child) in self.children.iter().enumerate() {
            if child.tag == tag {
                self.taken[i] = true;
            }
        }
    }

    /// Refuses the first child nobody took: the request asked for something this server does
    /// not do.
    pub fn finish(self) -> Result<(), KmsError> {
        match self.taken.iter().position(|taken| !taken) {
            None => Ok(()),
            Some(i) => Err(KmsError::NotSupported(format!(
                "{}.{} is not supported by this server",
                self.path, self.children[i].tag
            ))),
        }
    }
}

/// The name of an enumeration node, checked against the tag's KMIP list.
pub fn enum_name<'a>(node: &'a Ttlv, path: &str) -> Result<&'a str, KmsError> {
    let tag = node.tag.as_str();
    match &node.value {
        Value::Enumeration(Enumeration::Name(name)) => {
            if let Some(valid) = valid_names(tag) {
                if !valid.contains(&name.as_str()) {
                    let what = if tag == "ExpectedObjectType" {
                        "ObjectType"
                    } else {
                        tag
                    };
                    return Err(KmsError::Codec(format!(
                        "invalid value: string \"{name}\", expected valid {what} name"
                    )));
                }
            }
            Ok(name)
        }
        Value::Enumeration(Enumeration::Code(code)) => Err(KmsError::Codec(format!(
            "unsupported numeric {tag} 0x{code:08X}; use the name"
        ))),
        _ => Err(wrong_type(path, tag, "Enumeration")),
    }
}

/// "`what` is not supported": a valid KMIP value this server does not implement.
pub fn unsupported(path: &str, what: impl std::fmt::Display) -> KmsError {
    KmsError::NotSupported(format!("{path}: {what} is not supported by this server"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypt_request(extra: Ttlv) -> Ttlv {
        Ttlv::new(
            "Encrypt",
            Value::Structure(vec![
                Ttlv::new("UniqueIdentifier", Value::TextString("k".into())),
                extra,
            ]),
        )
    }

    #[test]
    fn a_field_nobody_reads_is_refused_by_name() {
        let request = encrypt_request(Ttlv::new(
            "KeyWrappingSpecification",
            Value::Structure(vec![]),
        ));
        let mut fields = Fields::of(&request, "Encrypt").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fields.text("UniqueIdentifier").ok().flatten(), Some("k"));
        let error = fields.finish().err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "Feature_Not_Supported: Encrypt.KeyWrappingSpecification is not supported by this server"
            )
        );
    }

    #[test]
    fn types_names_and_repeats_are_checked() {
        let request = encrypt_request(Ttlv::new(
            "BlockCipherMode",
            Value::Enumeration(Enumeration::Name("GCMX".into())),
        ));
        let mut fields = Fields::of(&request, "Encrypt").unwrap_or_else(|e| panic!("{e}"));
        assert!(fields.int("UniqueIdentifier").is_err());
        assert!(matches!(
            fields.enumeration("BlockCipherMode"),
            Err(KmsError::Codec(_))
        ));
        let twice = Ttlv::new(
            "Encrypt",
            Value::Structure(vec![
                Ttlv::new("Data", Value::ByteString(vec![1])),
                Ttlv::new("Data", Value::ByteString(vec![2])),
            ]),
        );
        let mut fields = Fields::of(&twice, "Encrypt").unwrap_or_else(|e| panic!("{e}"));
        assert!(fields.bytes("Data").is_err());
    }
}
