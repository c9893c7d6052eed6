// Package deploy holds no code: its tests check the deployment files at the
// repository root (Dockerfile, Dockerfile.cuda, .dockerignore) with Docker's
// own parsers, because no Docker engine runs where the tests do.
package deploy
