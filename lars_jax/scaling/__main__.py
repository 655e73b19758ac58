from lars_jax.scaling.cli import main

main()
