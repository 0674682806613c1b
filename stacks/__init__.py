"""The CDK app's stacks and constructs (AWS deployment of the platform); see app.py and docs/deploy-aws.md."""
