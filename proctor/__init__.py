"""proctor: a self-hosted backend for screen-recorded online exams.

The web app is built by ``proctor.app.create_app``; the Celery app is ``proctor.worker``. This
package file imports nothing, so a worker that imports ``proctor.merge`` never loads Flask.
"""
