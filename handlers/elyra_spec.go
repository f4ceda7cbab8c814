package handlers

import _ "embed"

// ElyraOpenAPI is kfbridge's OpenAPI description of the Elyra API it serves (GET /elyra/elyra.yaml):
// Elyra's routes and shapes as kfbridge implements them, with its additions.
//
//go:embed elyra_openapi.yaml
var ElyraOpenAPI []byte
