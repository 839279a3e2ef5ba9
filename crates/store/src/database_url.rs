//! Database URLs as they may be shown: in logs (`gantry server` waiting for its
//! database) and in `--print-config`. One function for both, so a password never
//! leaks through one of them only.

/// `url` with its password replaced by `<redacted>`, wherever PostgreSQL's URL syntax
/// can carry one: the userinfo (`postgres://user:PASSWORD@host/db`) and the
/// `password` query parameter. Everything else (user, host, database, other
/// parameters such as `sslmode`) stays, since it is what an operator needs to see.
pub fn redacted(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => match rest[..at].split_once(':') {
                    Some((user, _password)) => format!("{scheme}://{user}:<redacted>{}", &rest[at..]),
                    None => base.to_string(),
                },
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=<redacted>"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_go_and_everything_else_stays() {
        assert_eq!(redacted("postgres://gantry:hunter2@db:5432/gantry"), "postgres://gantry:<redacted>@db:5432/gantry");
        assert_eq!(
            redacted("postgres://gantry:s3cr@t@db.example:5432/g"),
            "postgres://gantry:<redacted>@db.example:5432/g"
        );
        assert_eq!(redacted("postgres://gantry@db/gantry"), "postgres://gantry@db/gantry");
        assert_eq!(
            redacted("postgres://db.example/g?sslmode=require&password=x@y"),
            "postgres://db.example/g?sslmode=require&password=<redacted>"
        );
        assert_eq!(redacted("not a url"), "not a url");
    }
}
