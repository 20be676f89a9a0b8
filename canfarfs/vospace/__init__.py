"""VOSpace: node model, sans-IO XML, URIs, and (later) an async client. No FUSE here."""
