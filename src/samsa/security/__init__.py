"""Security: the authorizer (ACLs, `samsa.security.acl`) and its store in the data dir."""
