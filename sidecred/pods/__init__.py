"""The pod model both servers share: annotations, role resolution, the namespace policy,
the settings that describe the sidecar to build, and the canonical sidecar. Pure."""
