"""
The admin side: metrics, liveness and readiness on a listener of their own
(``[admin] listen``); built by :func:`dd0c_route.admin.service.build_admin`.
"""
