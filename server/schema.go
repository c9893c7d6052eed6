package server

import (
	"encoding/json"

	"github.com/modelserver/modelserver/engine"
)

// schemaJSON describes the model's tensors in the shape of Truss's /schema
// answer: JSON schemas of the input and output objects, each property
// carrying the tensor's dtype and shape: an integer for a fixed dimension,
// the dimension's symbolic name (or null) for a dynamic one.
func schemaJSON(sig engine.Signature, streaming bool) []byte {
	body, _ := json.Marshal(map[string]any{
		"input_schema":       objectSchema(sig.Inputs),
		"output_schema":      objectSchema(sig.Outputs),
		"supports_streaming": streaming,
	})
	return body
}

func objectSchema(specs []engine.TensorSpec) map[string]any {
	props := make(map[string]any, len(specs))
	required := make([]string, 0, len(specs))
	for _, spec := range specs {
		shape := make([]any, len(spec.Shape))
		for i, d := range spec.Shape {
			if d == engine.DynamicDim {
				shape[i] = nil
				if spec.DimNames[i] != "" {
					shape[i] = spec.DimNames[i]
				}
				continue
			}
			shape[i] = d
		}
		props[spec.Name] = map[string]any{
			"title":       spec.Name,
			"description": "ndarray: msgpack_numpy array, nested JSON lists or {data_b64, shape, dtype}",
			"dtype":       spec.DType.String(),
			"shape":       shape,
		}
		required = append(required, spec.Name)
	}
	return map[string]any{"type": "object", "properties": props, "required": required}
}
