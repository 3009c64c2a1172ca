// Package recipes holds the walkthrough recipes and, in lib/, the standard
// library that every nsrun binary embeds and load() finds as @std//NAME.star.
package recipes
