"""The pipeline's stages: build, publish, then per cluster deploy (deploy/, layers/), release/ and report/.

Stages receive their clients from hpcci/wiring.py; start reading at deploy/run.py for a deploy, build.py for a build.
"""
