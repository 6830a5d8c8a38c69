//! What the functions read from API Gateway's request context (payload format 2.0), which
//! `lambda_http` attaches to every request as an extension. A client cannot forge it: API
//! Gateway fills it in.

use lambda_http::request::RequestContext;
use lambda_http::RequestExt;

/// `https://{requestContext.domainName}`: the base URL the client reached the API at, when the
/// request came from API Gateway and names a plausible host name.
///
/// The `Host` header is deliberately not used: it is the client's to choose.
pub fn public_base_url(request: &lambda_http::Request) -> Option<String> {
    let RequestContext::ApiGatewayV2(context) = request.request_context_ref()? else { return None };
    let domain = context.domain_name.as_deref()?;
    let plausible = !domain.is_empty()
        && domain.len() <= 253
        && domain.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        && !domain.starts_with(['.', '-', ':']);
    plausible.then(|| format!("https://{}", domain.to_ascii_lowercase()))
}

/// `requestContext.authorizer.iam.userArn`: the caller API Gateway's `AWS_IAM` authorizer
/// authenticated, when there is one.
pub fn iam_user_arn(request: &lambda_http::Request) -> Option<String> {
    let RequestContext::ApiGatewayV2(context) = request.request_context_ref()? else { return None };
    context.authorizer.as_ref()?.iam.as_ref()?.user_arn.clone().filter(|arn| !arn.is_empty())
}

/// API Gateway's id of the request (`requestContext.requestId`), which the router returns and
/// records in the audit trail, so both can be matched with API Gateway's access logs.
pub fn gateway_request_id(request: &lambda_http::Request) -> Option<String> {
    let RequestContext::ApiGatewayV2(context) = request.request_context_ref()? else { return None };
    context.request_id.clone().filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(request_context: serde_json::Value) -> lambda_http::Request {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/",
            "rawQueryString": "",
            "headers": {"host": "evil.example.com"},
            "requestContext": request_context,
            "isBase64Encoded": false
        });
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    fn context(extra: serde_json::Value) -> serde_json::Value {
        let mut context = serde_json::json!({
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "t"},
            "requestId": "r",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/May/2024:12:00:00 +0000",
            "timeEpoch": 1714564800000u64
        });
        if let (Some(map), Some(extra)) = (context.as_object_mut(), extra.as_object()) {
            map.extend(extra.clone());
        }
        context
    }

    #[test]
    fn the_base_url_is_the_domain_api_gateway_names() {
        let request = event(context(serde_json::json!({"domainName": "A1B2C3D4E5.execute-api.eu-west-1.amazonaws.com"})));
        assert_eq!(public_base_url(&request).as_deref(), Some("https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"));
    }

    #[test]
    fn no_domain_no_base_url_even_with_a_host_header() {
        assert_eq!(public_base_url(&event(context(serde_json::json!({})))), None);
        assert_eq!(public_base_url(&event(context(serde_json::json!({"domainName": "a/b"})))), None);
        assert_eq!(public_base_url(&event(context(serde_json::json!({"domainName": ""})))), None);
    }

    #[test]
    fn the_iam_principal_comes_from_the_authorizer() {
        let iam = serde_json::json!({"authorizer": {"iam": {
            "accessKey": "ASIAEXAMPLE", "accountId": "123456789012", "callerId": "AIDAEXAMPLE:alice",
            "principalOrgId": null, "userArn": "arn:aws:iam::123456789012:user/alice", "userId": "AIDAEXAMPLE"
        }}});
        assert_eq!(iam_user_arn(&event(context(iam))).as_deref(), Some("arn:aws:iam::123456789012:user/alice"));
        assert_eq!(iam_user_arn(&event(context(serde_json::json!({})))), None);
        let lambda = serde_json::json!({"authorizer": {"lambda": {"accessKeyId": "FHLKEY"}}});
        assert_eq!(iam_user_arn(&event(context(lambda))), None);
    }
}
