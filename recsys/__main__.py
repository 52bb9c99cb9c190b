from recsys.run import cli

cli()
