"""The web application: ``gunicorn -c gunicorn_config.py server:app`` (or ``python server.py``
for development). All logic lives in the ``proctor`` package."""
from proctor.app import create_app

app = create_app()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000, debug=False)
