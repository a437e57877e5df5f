"""runner-cache: GitLab Runner's S3 distributed cache, set up and kept by Prefect flows."""
