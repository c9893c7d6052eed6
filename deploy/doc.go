// Package deploy holds no code: its tests check the deployment files at the
// repository root (Dockerfile.cuda) with Docker's own Dockerfile parser,
// because no Docker engine runs where the tests do.
package deploy
