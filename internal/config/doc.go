// Package config is the gateway's configuration: the schema (Config and
// the types below it), Load and Parse, the built-in defaults, and the
// validation that reports every problem with its file, line and dotted key
// (docs/operations.md "Config files and validation").
//
// The YAML is decoded into a yaml.Node tree and walked by hand (walk.go)
// rather than unmarshalled into structs: that is what lets every problem
// carry its position, lets unknown keys be errors (with a suggestion), and
// lets validation go on after the first problem so that `wsgate validate`
// prints all of them at once. Loading happens in three steps: walk the tree
// into typed values, merge each route over `defaults` key by key
// (settings.go), then check the contradictions between values and across
// routes.
//
// A loaded Config is never modified: a reload builds a new one. The package
// imports no other package of the gateway.
package config
