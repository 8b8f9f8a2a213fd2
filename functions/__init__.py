"""One package per Lambda function; each handler module is thin (resolver, routes, one service call)."""
