"""graphql: see docs/."""
