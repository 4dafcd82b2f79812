"""The bayes_nlme model zoo: ready-to-fit models on bundled data.

Installed as ``bayes_nlme.model_zoo``; each module defines ``model`` (a :class:`bayes_nlme.Model`)
and ``data()`` (its default dataset), and runs from the command line with
``bayes-nlme fit NAME``.
"""
