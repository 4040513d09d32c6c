"""Dashboard pages; each view checks the role, asks selectors, renders one template.

One module per page family: `fleet`, `gpus` (node, GPU and deployment detail), `traces`,
`assessments`, `whatif` (the playground), `benchmarks`, `reports`, `rollouts`. Every view
is wrapped in `dashboard.access.role_required`.
"""
