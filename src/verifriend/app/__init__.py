"""The jobs behind the command line: they read files, report progress and write results.

Each job takes one settings object (:mod:`verifriend.app.settings`) and calls the algorithm
packages (``bounds``, ``verify``, ``train``, ``bnn``, ...), which print nothing and write no
files: progress reaches the app through callbacks, results come back as plain data.
"""
