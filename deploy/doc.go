// Package deploy holds no code: it is the home of the container image and Kubernetes manifests
// (the Dockerfile at the repository root, *.yaml here) and of the tests that check them, since
// no Docker engine or cluster is available where the tests run. See docs/deploy.md.
package deploy
