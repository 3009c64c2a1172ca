// Package recipes holds the walkthrough recipes and, in lib/, the standard
// library that every nsrun binary embeds and load() finds as @std//NAME.star.
package recipes

import (
	"embed"
	"io/fs"
)

//go:embed lib/*.star
var lib embed.FS

// Std is the standard library: recipes/lib.
var Std, _ = fs.Sub(lib, "lib")
