"""Git webhooks in: a signed push to a placement's URL deploys the pushed commit when
one of the placement's rules matches. A nested app (label `webhooks`) so its
migrations never clash with those of `deployments`."""
