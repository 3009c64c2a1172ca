package recipes

import (
	"embed"
	"io/fs"
)

//go:embed lib/*.star
var lib embed.FS

// Std is the standard library: recipes/lib.
var Std, _ = fs.Sub(lib, "lib")
