//! Client certificate authentication: the user is the first subject CN of a certificate that
//! rustls has already verified against the authority bundle (and CRLs) at the handshake.

/// Why a verified certificate still names no acceptable user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Unparsable,
    NoCommonName,
    NotUtf8,
}

impl NameError {
    /// The short reason given to the client.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unparsable => "client certificate cannot be read",
            Self::NoCommonName => "client certificate has no subject common name",
            Self::NotUtf8 => "client certificate common name is not UTF-8",
        }
    }
}

/// The user named by the first subject CN of a DER certificate, exactly as written there (the
/// authenticator then applies [`crate::identity::check_user_name`]: nothing is trimmed).
pub fn user_from_certificate(der: &[u8]) -> Result<String, NameError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| NameError::Unparsable)?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or(NameError::NoCommonName)?;
    let name = cn.as_str().map_err(|_| NameError::NotUtf8)?;
    Ok(name.to_owned())
}
