"""The operations page: workers and queue backlog (what ``GET /stats`` reports), the link to
Flower, the seat settings (what ``GET``/``PUT /api/admin/seat-config`` read and save), and each
exam's archives and CSV report (as ``/api/exams/<id>/archives`` and ``/report.csv``)."""
from __future__ import annotations

import json

from flask import Response, redirect, render_template, request, url_for

from .. import archive, exams, report, seat_settings, stats
from ..config import settings
from ..errors import ProctorError
from . import forms
from .console import bp, signed_in


@bp.get("/operations")
@signed_in
def operations():
    shown = json.dumps(seat_settings.seat_configuration(), indent=2, ensure_ascii=False)
    return operations_page(forms.SeatSettings(formdata=None, config=shown), saved=request.args.get("saved") == "1")


def operations_page(seat_form, *, problem: str | None = None, saved: bool = False) -> str:
    return render_template(
        "operations.html", stats=stats.snapshot(), flower_url=settings().flower_url,
        exams=[{**exam, "archives": archive.archives_of(exam["id"])} for exam in exams.list_exams()],
        seat_form=seat_form, problem=problem, saved=saved,
    )


@bp.post("/operations/seat-settings")
@signed_in
def save_seat_settings():
    """Saved only when all of it is right; otherwise shown again with what is wrong (400)."""
    form = forms.SeatSettings()
    if not form.validate_on_submit():
        return operations_page(form), 400
    try:
        new = seat_settings.seat_configuration_from_json(form.config.data.encode())
    except ProctorError as err:
        return operations_page(form, problem=err.message), 400
    seat_settings.save_seat_configuration(new)
    return redirect(url_for("console.operations", saved=1, _anchor="seat-settings"))


@bp.get("/exams/<id:exam_id>/report.csv")
@signed_in
def exam_report_csv(exam_id: int):
    """The exam's report as a download (its cells inert in a spreadsheet, as the API's)."""
    return Response(report.report_csv(exam_id), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="exam-{exam_id}-report.csv"'})
