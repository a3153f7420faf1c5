"""The component library: packages and the policy document, signed with The Update Framework.

`roles` makes and checks the metadata (sans-IO); `store`, `tool` and `repo` keep the
repository (`rms-repo`); `fetcher`, `client` and `install` are the node's side (`rms update`).
See docs/updates.md.
"""
