package stickless;

/** A status from libstickless that is an error: bad input, a closed or forked handle, no memory... */
public final class StickError extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int status;
    private final String name;

    StickError(int status, String name) {
        super(name + " (" + status + ")");
        this.status = status;
        this.name = name;
    }

    /** The status number, fixed forever by the ABI (stickless.h). */
    public int status() {
        return status;
    }

    /** The status name, e.g. "STICKLESS_BAD_KEY". */
    public String name() {
        return name;
    }
}
