"""The versioned JSON API (/api/v1/) and the personal access tokens that reach it.
Every write goes through deployments.services, exactly as the pages do."""
