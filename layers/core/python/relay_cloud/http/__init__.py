"""HTTP layer: resolver wiring, who may call each route, error mapping, cookies, OpenAPI."""
