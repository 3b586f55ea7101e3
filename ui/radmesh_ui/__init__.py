"""radmesh's chat UI: a Gradio 6 app in front of the assistant (gRPC), with a NiiVue viewer page.

``python -m radmesh_ui --assistant-url HOST:PORT`` serves it; :func:`radmesh_ui.app.build_app`
gives the FastAPI app (Gradio mounted, plus the viewer page and the per-user files). The UI
talks to the assistant only (:mod:`radmesh.assistant.client`); it holds no model.
"""

__all__ = ["UIConfig", "build_app"]


def __getattr__(name: str):  # lazy: importing the package must not import Gradio
    if name in __all__:
        from radmesh_ui import app

        return getattr(app, name)
    raise AttributeError(name)
